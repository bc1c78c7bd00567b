"""Where the sink resumes: the largest Kafka offset each table holds, and the rollup
minutes to correct after an unclean stop."""

from __future__ import annotations

import logging
from typing import Any

from tokenledger.streams.config import sql_root

log = logging.getLogger(__name__)

REPAIR_SQL = sql_root() / "repair" / "spend_by_minute.sql"


def repair_rollup(client: Any, committed: dict[int, int]) -> int:
    """Rows stored at or after the committed offset may have lost their rollup part (an
    embedded engine killed between the raw and the materialized view write): correct
    spend_by_minute for their minutes. Returns how many minutes were checked."""
    minutes: set[Any] = set()
    for partition, offset in committed.items():
        rows = client.query(
            "SELECT DISTINCT toStartOfMinute(ts) FROM usage_events "
            "WHERE kafka_partition = {p:UInt32} AND kafka_offset >= {o:UInt64}",
            parameters={"p": partition, "o": offset},
        ).result_rows
        minutes.update(r[0] for r in rows)
    if minutes:
        client.command(REPAIR_SQL.read_text(), parameters={"minutes": sorted(minutes)})
        log.info("checked the rollup of %d minute(s) after an unclean stop", len(minutes))
    return len(minutes)


def stored_offsets(client: Any, table: str) -> dict[int, int]:
    """partition -> largest Kafka offset already stored in ``table``."""
    rows = client.query(
        "SELECT kafka_partition, max(kafka_offset), count() FROM {t:Identifier} "
        "GROUP BY kafka_partition",
        parameters={"t": table},
    ).result_rows
    return {int(p): int(o) for p, o, n in rows if n}


def column_types(client: Any, table: str) -> dict[str, str]:
    """column -> ClickHouse type of ``table`` in the client's database."""
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
        "AND table = {t:String}",
        parameters={"t": table},
    ).result_rows
    return {str(name): str(kind) for name, kind in rows}
