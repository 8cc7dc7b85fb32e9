"""Call-detail connector: one-row-per-call CSV exports to canonical events via a YAML column
mapping (mappings/): the mapping schema (call_detail_mapping), the pure row parser
(call_detail_parser) and the file source (call_detail_source)."""
