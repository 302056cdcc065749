#!/usr/bin/env python3
"""Where the node's CPU goes against tantivy behind the same gRPC server, from a perf profile of
the node bench's profiling mode (docs/benchmarks.md, "Where the gap goes").

    cargo bench --bench node -- --queries 300 --profile-seconds 150 [--profile-both-tiers [--profile-split]] &
    perf record -F 299 -e cpu-clock --call-graph dwarf,32768 -p <bench pid> -o perf.data -- sleep 15
    perf script -i perf.data -F comm,ip,sym --no-inline > stacks.txt
    tools/profile_phases.py stacks.txt

With `--profile-both-tiers` the other side is tantivy over the monolithic index; with
`--profile-split` too, tantivy over the node's own two tiers (`SplitTantivy`). Only the ranking's
split by kind of work differs in scope between the sides: tantivy's covers its collection
(`SortBySimilarityScore`), not the weights it builds before it, which the node's covers.

`perf script` with these fields takes seconds where `perf report --children` takes minutes. Each
sample is put on one side (the node's search RPC or the bare server's) by the frames of its
stack, then in the first phase whose frame it holds; the shares are of all samples, so the two
sides compare directly (the bench sends them the same searches in turn). A stack cut short by
the unwinder that reaches neither side's frames counts as neither. Each side's ranking is then
split by kind of work (from the sample's leaf frame and stack), the node's term lookups by the
tier it was ranking are counted, and the leaf frames on which the node spends most beyond
tantivy are listed.
"""

import collections
import re
import sys

NODE_PHASES = [
    ("rank hot tier", "node::search::rank_hot"),
    ("rank cold tier", "node::search::rank_cold"),
    ("parse and size", "node::search::prepare"),
    ("merge tiers", "node::search::merge_tiers"),
    ("skip decision", "node::search::skips_cold"),
    ("hot documents", "node::search::page_documents"),
    ("cold documents", "node::search::read_cold_documents"),
    ("metrics", "node::metrics::"),
    ("rest of the search", "node::search::search::"),
    ("API layer", "TierdexService"),
]
BARE_PHASES = [
    ("parse", "QueryParser"),
    ("search", "SortBySimilarityScore"),
    ("search", "top_docs"),
    ("documents", "NodeDocuments::read"),
    ("documents", "store::reader"),
    ("rest", "BareTantivyServer"),
]
# The ranking's work by kind, from the sample's leaf frame and stack (first rule that holds).
RANKING_KINDS = [
    (
        "WAND and postings",
        lambda leaf, stack: any(
            word in leaf
            for word in (
                "block_wand",
                "block_max",
                "SkipReader",
                "load_block",
                "BlockSegmentPostings::seek",
                "bitpacking",
                "Bm25Weight::score",
            )
        ),
    ),
    ("term dictionary lookups", lambda leaf, stack: "get_term_info" in stack),
    (
        "collector",
        lambda leaf, stack: any(
            word in stack for word in ("collect_candidate", "SegmentTopHits", "TopNComputer")
        )
        or "sort_key" in leaf,
    ),
    (
        "weights and statistics",
        lambda leaf, stack: any(word in stack for word in ("for_terms", "doc_freq", "Bm25Weight")),
    ),
    ("opening scorers", lambda leaf, stack: "specialized_scorer" in stack or "read_postings" in stack),
    ("allocation and copies", lambda leaf, stack: "mi_" in leaf or "memmove" in leaf),
]
NODE_RANKING = ("node::search::rank_hot", "node::search::rank_cold")
BARE_RANKING = ("SortBySimilarityScore",)
BARE_MARKS = ("BareTantivyServer", "SortBySimilarityScore")
NODE_MARKS = ("tierdex::node::", "TierdexService")


def samples(path):
    """Each sample's frames, leaf first."""
    stack = None
    with open(path, errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if not line.strip():
                if stack is not None:
                    yield stack
                stack = None
            elif not line[0].isspace():
                if stack is not None:
                    yield stack
                stack = []
            elif stack is not None:
                parts = line.strip().split(" ", 1)
                stack.append(re.sub(r"\+0x[0-9a-f]+$", "", parts[1] if len(parts) > 1 else "?"))
    if stack is not None:
        yield stack


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: profile_phases.py <perf script output>")
    sides = {"node": collections.Counter(), "bare": collections.Counter()}
    ranking = {"node": collections.Counter(), "bare": collections.Counter()}
    leaves = {"node": collections.Counter(), "bare": collections.Counter()}
    # Term dictionary lookups anywhere in the RPC: tantivy's also weigh each term (`doc_freq`).
    lookups = collections.Counter()
    # The node's, by the tier it was ranking.
    tier_lookups = collections.Counter()
    total = 0
    for stack in samples(sys.argv[1]):
        total += 1
        joined = " ".join(stack)
        if any(mark in joined for mark in BARE_MARKS):
            side, phases, ranks = "bare", BARE_PHASES, BARE_RANKING
        elif any(mark in joined for mark in NODE_MARKS):
            side, phases, ranks = "node", NODE_PHASES, NODE_RANKING
        else:
            continue
        phase = next((name for name, frame in phases if frame in joined), "other")
        sides[side][phase] += 1
        if "get_term_info" in joined:
            lookups[side] += 1
            if side == "node":
                tier = next((frame for frame in NODE_RANKING if frame in joined), None)
                if tier:
                    tier_lookups[tier.rsplit("_", 1)[1]] += 1
        leaf = stack[0] if stack else "?"
        leaves[side][leaf[:100]] += 1
        if any(frame in joined for frame in ranks):
            kind = next((name for name, holds in RANKING_KINDS if holds(leaf, joined)), "other")
            ranking[side][kind] += 1
    if total == 0:
        sys.exit(f"{sys.argv[1]}: no samples (is it `perf script -F comm,ip,sym` output?)")
    share = lambda count: f"{100 * count / total:5.2f}%"
    for side, label in (("node", "node's search RPC"), ("bare", "tantivy behind the same server")):
        counts = sides[side]
        print(f"{label}: {100 * sum(counts.values()) / total:.1f}% of {total} samples")
        for phase, count in counts.most_common():
            print(f"  {share(count)}  {phase}")
        print(f"  its ranking by kind of work ({share(sum(ranking[side].values())).strip()}):")
        for kind, count in ranking[side].most_common():
            print(f"    {share(count)}  {kind}")
    print(
        f"term dictionary lookups anywhere in the RPC: node {share(lookups['node']).strip()}, "
        f"tantivy {share(lookups['bare']).strip()}"
    )
    print(
        f"the node's, ranking each tier: hot {share(tier_lookups['hot']).strip()}, "
        f"cold {share(tier_lookups['cold']).strip()}"
    )
    print("leaf frames the node spends most on beyond tantivy's (node, tantivy):")
    extra = sorted(
        set(leaves["node"]) | set(leaves["bare"]),
        key=lambda leaf: leaves["bare"][leaf] - leaves["node"][leaf],
    )
    for leaf in extra[:15]:
        print(f"  {share(leaves['node'][leaf])} {share(leaves['bare'][leaf])}  {leaf}")


if __name__ == "__main__":
    main()
