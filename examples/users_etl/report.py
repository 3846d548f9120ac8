"""Report how much of the users sheet was valid (the rejects and their reasons)."""

from batchpilot.artifacts import read_table


def valid_share(context, log):
    """Print the valid share and the most common reject reasons; return them as metadata."""
    valid = read_table(context.inputs["validate_users"]).num_rows
    rejects = read_table(context.extra_inputs["validate_users"]["rejects"])
    total = valid + rejects.num_rows
    share = valid / total if total else 1.0
    reasons: dict[str, int] = {}
    for reason in rejects.column("_reject_reason").to_pylist():
        reasons[reason] = reasons.get(reason, 0) + 1
    print(f"valid share: {share:.1%} ({valid} of {total} rows)")
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        print(f"  rejected {count}: {reason}")
    log.info("valid share %.3f", share)
    return {"valid_share": round(share, 4), "valid": valid, "rejected": rejects.num_rows}
