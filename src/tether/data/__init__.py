"""Records, readers, format adapters and summaries: the data model every tether command shares.

from tether.data import read_records
pairs = read_records("pairs.jsonl", "preference")
"""

from tether.data.hh_rlhf import parse_transcript, row_to_preference
from tether.data.readers import (
    ADAPTERS,
    FORMATS,
    ReadReport,
    iter_rows,
    read_records,
    read_records_with_report,
)
from tether.data.records import (
    RECORD_TYPES,
    Conversation,
    Message,
    Preference,
    Record,
    RecordKind,
    Unpaired,
    parse_record,
    record_class,
)
from tether.data.summary import DataSummary, LengthStats, summarize

__all__ = [
    "ADAPTERS",
    "FORMATS",
    "RECORD_TYPES",
    "Conversation",
    "DataSummary",
    "LengthStats",
    "Message",
    "Preference",
    "ReadReport",
    "Record",
    "RecordKind",
    "Unpaired",
    "iter_rows",
    "parse_record",
    "parse_transcript",
    "read_records",
    "read_records_with_report",
    "record_class",
    "row_to_preference",
    "summarize",
]
