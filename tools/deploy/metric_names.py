#!/usr/bin/env python3
"""Print the metric names that Prometheus rule files and Grafana dashboards reference.

    python3 tools/deploy/metric_names.py tools/deploy/prometheus/alerts.yml \
        tools/deploy/grafana/tierdex.json

prints every metric name their PromQL expressions use, one per line, sorted and unique, exactly
as referenced: a histogram `x` shows up as `x_bucket`, `x_sum` or `x_count`, the names a
/metrics scrape carries. `--locations` prints `name<TAB>where` for every reference instead
(file:line for rules, the panel or variable for dashboards), to say where a name comes from.

What is read:
- rule files (YAML, or JSON): the `expr` of every rule. Names that a `record` rule of the given
  files defines are left out (they come from Prometheus, not from a scrape).
- dashboards (a file ending in .json holding an object with `panels` or `templating`): every
  `expr` (panel targets, annotations), skipping targets of a non-Prometheus datasource, and the
  queries of `query` template variables (`label_values(selector, label)`, `label_names(selector)`,
  `query_result(expr)`, or plain PromQL; `metrics(regex)` names no metric).

What is not a metric name: functions and aggregations (an identifier followed by `(`),
keywords (by, without, on, ignoring, group_left, group_right, bool, offset, and, or, unless,
atan2, inf, nan and the aggregation operators), label names in `{...}` and in the label lists of
by/without/on/ignoring/group_left/group_right, strings, numbers and durations, ranges and
subqueries `[...]`, Grafana variables (`$index`, `${index:regex}`, `[[index]]`,
`$__rate_interval`) and comments. A `{__name__="x"}` matcher names `x`.

Standard library only. The YAML reader understands what rule files use: block mappings and
sequences, `expr:` as a plain, single- or double-quoted scalar (also over several lines) or a
`|`/`>` block scalar. Anything it cannot read, and a rule without an `expr`, is an error (exit 2).
"""

import argparse
import json
import re
import signal
import sys

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
KEYWORDS = AGGREGATIONS | {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "atan2", "inf", "nan",
}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}

IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)[A-Za-z0-9_]*")
GRAFANA_VAR = re.compile(r"\$(?:\{[^}]*\}|[A-Za-z0-9_]+)|\[\[[^\]]*\]\]")


class Error(Exception):
    pass


def _string_end(text, i):
    """Index just past the quoted string starting at text[i]."""
    quote = text[i]
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\" and quote != "`":
            j += 2
            continue
        if c == quote:
            return j + 1
        j += 1
    raise Error(f"unterminated string in {text!r}")


def _unquote(literal):
    if literal[0] == "`":
        return literal[1:-1]
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _skip_space(text, i):
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text[i] == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end + 1
        else:
            break
    return i


def _matchers(text, i):
    """Reads the label matchers `{...}` at text[i]; returns (end, names from __name__)."""
    names = []
    j = i + 1
    while True:
        j = _skip_space(text, j)
        if j >= len(text):
            raise Error(f"unclosed {{ in {text!r}")
        if text[j] == "}":
            return j + 1, names
        if text[j] == ",":
            j += 1
            continue
        if text[j] in "\"'`":
            # A quoted label name (Prometheus 3) or a bare quoted metric name.
            end = _string_end(text, j)
            label = _unquote(text[j:end])
            j = _skip_space(text, end)
            if j < len(text) and text[j] in ",}":
                names.append(label)
                continue
        else:
            m = LABEL.match(text, j)
            if not m:
                raise Error(f"unexpected {text[j]!r} in label matchers of {text!r}")
            label = m.group(0)
            j = _skip_space(text, m.end())
        op = re.compile(r"=~|!~|!=|=").match(text, j)
        if not op:
            raise Error(f"expected a matcher operator after {label!r} in {text!r}")
        j = _skip_space(text, op.end())
        if j >= len(text) or text[j] not in "\"'`":
            raise Error(f"expected a string after {label}{op.group(0)} in {text!r}")
        end = _string_end(text, j)
        if label == "__name__" and op.group(0) == "=":
            names.append(_unquote(text[j:end]))
        j = end


def promql_names(expr):
    """The metric names a PromQL expression (possibly holding Grafana variables) references."""
    names = []
    text = expr
    i = 0
    depth = 0
    while True:
        i = _skip_space(text, i)
        if i >= len(text):
            break
        c = text[i]
        if c in "\"'`":
            i = _string_end(text, i)
        elif c == "$" or text.startswith("[[", i):
            m = GRAFANA_VAR.match(text, i)
            if not m:
                raise Error(f"unreadable Grafana variable at {text[i:i + 20]!r}")
            i = m.end()
        elif c == "{":
            i, found = _matchers(text, i)
            names.extend(found)
        elif c == "[":
            end = text.find("]", i)
            if end < 0:
                raise Error(f"unclosed [ in {text!r}")
            i = end + 1
        elif c.isdigit() or (c == "." and i + 1 < len(text) and text[i + 1].isdigit()):
            i = NUMBER.match(text, i).end()
        elif c == "_" or c == ":" or c.isalpha():
            m = IDENT.match(text, i)
            word = m.group(0)
            i = m.end()
            after = _skip_space(text, i)
            lower = word.lower()
            if lower in LABEL_LIST_KEYWORDS and after < len(text) and text[after] == "(":
                end = text.find(")", after)
                if end < 0:
                    raise Error(f"unclosed label list after {word} in {text!r}")
                i = end + 1
            elif lower in KEYWORDS:
                pass
            elif after < len(text) and text[after] == "(":
                pass  # a function
            else:
                names.append(word)
        else:
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    raise Error(f"unbalanced ) in {text!r}")
            i += 1
    if depth != 0:
        raise Error(f"unbalanced ( in {text!r}")
    return names


def _split_args(text):
    """Top-level comma-separated arguments of a call's argument text."""
    args, start, depth, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            i = _string_end(text, i)
            continue
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif c == "," and depth == 0:
            args.append(text[start:i])
            start = i + 1
        i += 1
    args.append(text[start:])
    return [a.strip() for a in args if a.strip()]


def variable_query_names(query):
    """Metric names of a Grafana Prometheus template variable's query."""
    m = re.fullmatch(r"\s*(label_values|label_names|metrics|query_result)\s*\((.*)\)\s*", query,
                     re.S)
    if not m:
        return promql_names(query)
    function, inner = m.groups()
    args = _split_args(inner)
    if function == "label_values":
        return promql_names(args[0]) if len(args) == 2 else []
    if function == "label_names":
        return promql_names(args[0]) if args else []
    if function == "query_result":
        return promql_names(inner)
    return []  # metrics(regex)


# ------------------------------------------------------------------------------ rule files

KEY = re.compile(r"^(?P<indent>[ ]*)(?:-[ ]+)*(?P<key>[A-Za-z_][A-Za-z0-9_-]*):(?:[ ]+(?P<value>.*))?$")


def _indent(line):
    return len(line) - len(line.lstrip(" "))


def _strip_comment(plain):
    m = re.search(r"(^|\s)#", plain)
    return (plain[: m.start()] if m else plain).strip()


def _yaml_scalar(lines, n, column, value, is_expr):
    """The scalar of the key at line n (the key at `column`, `value` the rest of its line) and
    the index of the line after it. For a key other than `expr`, nothing after the key means a
    nested mapping or sequence follows, and a flow collection is skipped: (None, n + 1)."""
    value = value or ""
    stripped = value.strip()
    header = re.fullmatch(r"([|>])([+-]?[1-9]?|[1-9][+-])\s*(#.*)?", stripped)
    empty = not stripped or stripped.startswith("#")
    if empty and not is_expr:
        return None, n + 1
    if header or empty:
        explicit = re.search(r"[1-9]", header.group(2)) if header else None
        body, block_indent, k = [], None, n + 1
        while k < len(lines):
            line = lines[k]
            if line.strip():
                if _indent(line) <= column:
                    break
                if block_indent is None:
                    block_indent = column + int(explicit.group(0)) if explicit else _indent(line)
                text = line[block_indent:]
                body.append(text if header else _strip_comment(text))
            else:
                body.append("")
            k += 1
        return "\n".join(body).strip("\n"), k
    value = value.lstrip()
    if value[0] in "\"'":
        quote = value[0]
        text = value
        k = n
        while True:
            end = _yaml_quoted_end(text, quote)
            if end is not None:
                break
            k += 1
            if k >= len(lines):
                raise Error(f"line {n + 1}: unterminated {quote}-quoted scalar")
            text += "\n" + lines[k].strip()
        body = text[1:end]
        if quote == "'":
            return body.replace("''", "'"), k + 1
        unescaped = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)),
                           body, flags=re.S)
        return unescaped, k + 1
    if value[0] in "[{&*!":
        if not is_expr:
            return None, n + 1  # e.g. `labels: {severity: warning}`
        raise Error(f"line {n + 1}: flow collections, anchors, aliases and tags are not read")
    parts, k = [_strip_comment(value)], n + 1
    while k < len(lines):
        line = lines[k]
        if line.strip() and _indent(line) <= column:
            break
        parts.append(_strip_comment(line))
        k += 1
    return " ".join(p for p in parts if p), k


def _yaml_quoted_end(text, quote):
    j = 1
    while j < len(text):
        if quote == '"' and text[j] == "\\":
            j += 2
            continue
        if text[j] == quote:
            if quote == "'" and text[j + 1: j + 2] == "'":
                j += 2
                continue
            return j
        j += 1
    return None


def rules_exprs(path, text):
    """(line, expr) of every rule, and the names recording rules define."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        exprs, recorded = [], set()
        for group in data.get("groups", []):
            for rule in group.get("rules", []):
                if "expr" not in rule:
                    raise Error(f"{path}: a rule without expr: {rule}")
                exprs.append(("?", str(rule["expr"])))
                if "record" in rule:
                    recorded.add(rule["record"])
        return exprs, recorded
    lines = text.split("\n")
    exprs, recorded, rules = [], set(), 0
    n = 0
    while n < len(lines):
        line = lines[n]
        m = KEY.match(line)
        if not m or line.lstrip().startswith("#"):
            n += 1
            continue
        key = m.group("key")
        column = line.index(key + ":")
        # Every key's scalar is read whole, so that text in a description is never taken for
        # a key.
        value, after = _yaml_scalar(lines, n, column, m.group("value"), is_expr=key == "expr")
        if key in ("alert", "record"):
            rules += 1
        if key == "record":
            recorded.add(value)
        elif key == "expr":
            exprs.append((n + 1, value))
        n = after
    if rules != len(exprs):
        raise Error(f"{path}: {rules} rules (alert or record) but {len(exprs)} expr keys")
    return exprs, recorded


# ------------------------------------------------------------------------------ dashboards

def dashboard_exprs(data):
    """(where, kind, query) of every PromQL expression of a dashboard; kind is expr or variable."""
    found = []

    def walk(node, where, datasource):
        if isinstance(node, dict):
            ds = node.get("datasource", datasource)
            if isinstance(ds, dict) and "type" in ds:
                datasource = ds.get("type")
            title = node.get("title")
            if title and node.get("type") not in (None, "dashboard"):
                where = f"panel {title!r}"
            if isinstance(node.get("expr"), str) and datasource in (None, "prometheus"):
                found.append((where, "expr", node["expr"]))
            for key, value in node.items():
                if key == "templating":
                    continue
                walk(value, where, datasource)
        elif isinstance(node, list):
            for item in node:
                walk(item, where, datasource)

    walk({k: v for k, v in data.items()}, "dashboard", None)
    for var in data.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        ds = var.get("datasource")
        if isinstance(ds, dict) and ds.get("type") not in (None, "prometheus"):
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if query:
            found.append((f"variable ${var.get('name')}", "variable", query))
    return found


def references(path):
    """(name, where) of every metric reference in one file, and names defined by recording."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    refs, recorded = [], set()
    data = None
    if path.endswith(".json"):
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("dashboard"), dict):
            data = data["dashboard"]  # as the HTTP API exports it
    if isinstance(data, dict) and ("panels" in data or "templating" in data):
        for where, kind, query in dashboard_exprs(data):
            try:
                names = promql_names(query) if kind == "expr" else variable_query_names(query)
            except Error as err:
                raise Error(f"{path}: {where}: {err}") from None
            refs.extend((name, f"{path}: {where}") for name in names)
    else:
        exprs, recorded = rules_exprs(path, text)
        for line, expr in exprs:
            try:
                names = promql_names(expr)
            except Error as err:
                raise Error(f"{path}:{line}: {err}") from None
            refs.extend((name, f"{path}:{line}") for name in names)
    return refs, recorded


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Print the metric names Prometheus rule files and Grafana dashboards use.")
    parser.add_argument("files", nargs="+", help="rule files (YAML/JSON) and dashboards (.json)")
    parser.add_argument("--locations", action="store_true",
                        help="print name<TAB>where for every reference")
    args = parser.parse_args(argv)
    refs, recorded = [], set()
    try:
        for path in args.files:
            file_refs, file_recorded = references(path)
            refs.extend(file_refs)
            recorded |= file_recorded
    except (Error, OSError, ValueError) as err:
        print(f"metric_names: {err}", file=sys.stderr)
        return 2
    refs = [(name, where) for name, where in refs if name not in recorded]
    if args.locations:
        for name, where in sorted(set(refs)):
            print(f"{name}\t{where}")
    else:
        for name in sorted({name for name, _ in refs}):
            print(name)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` is not an error
    sys.exit(main())
