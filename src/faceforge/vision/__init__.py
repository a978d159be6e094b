"""Photo in, faces out: decode, detect, crop, embed. No database, no HTTP."""
