"""The version of the chunking rules a KB's documents were cut by (recorded in its manifest)."""

# The version of the chunking rules, recorded in a KB's manifest when it is created or reindexed. A KB
# whose documents were chunked by older rules keeps those chunks (re-ingesting an unchanged file does
# not re-chunk it), so ingesting into it says what `docqa reindex` would bring.
RULES = 2
RULES_CHANGES = {
    2: "statute articles and numbered clauses are units of their own with pinpoint labels (exact article "
       "lookup), tables are sections of their own",
}
