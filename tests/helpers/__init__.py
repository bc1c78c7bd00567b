"""What several tests share: brokers and readers, waiting with a deadline, the independent
pricing oracle, the anomaly scoring oracle, event factories, CLI runners."""
