"""The developer stack: Apache Kafka in KRaft mode on 127.0.0.1 (jars resolved by Maven),
tiktoken's rank files (from the npm package, sha256-verified), and the supervisor of the
child processes the demo, the benchmarks and the tests start. Nothing here is on the money
path; production points TOKENLEDGER_KAFKA at its own cluster."""
