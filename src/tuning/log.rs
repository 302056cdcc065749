//! Query logs: one query per line, or `count<TAB>query` for a weighted log. Lines that cannot be
//! used are kept as located problems; only a log none of whose lines is usable is an error
//! (`QueryLog::nothing_usable`), which shows the first of them.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::TuningError;

/// One distinct query of a log and how often it was asked.
#[derive(Debug, Clone)]
pub struct LoggedQuery {
    pub text: String,
    /// Sum of the counts of the lines holding it.
    pub weight: u64,
    /// 1-based line of its first occurrence, for reports.
    pub first_line: u64,
}

/// Why a line of a log was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Only white space.
    Blank,
    /// Not valid UTF-8, or a `count<TAB>query` line whose count is not a positive integer.
    Unreadable,
    /// The query does not parse, or cannot run on the index's schema.
    Query,
}

#[derive(Debug, Clone, Serialize)]
pub struct LineProblem {
    pub line: u64,
    pub kind: ProblemKind,
    pub message: String,
}

/// A parsed log: its distinct queries in order of first appearance, and its unusable lines.
#[derive(Debug, Clone, Default)]
pub struct QueryLog {
    pub source: String,
    pub queries: Vec<LoggedQuery>,
    pub problems: Vec<LineProblem>,
    pub lines: u64,
    /// Lines holding a query (usable or not).
    pub query_lines: u64,
    /// Those of them starting with digits and a colon (`17:some words`).
    pub id_prefixed_lines: u64,
}

/// Bad lines shown in the error for a log without a usable one.
const SHOWN_PROBLEMS: usize = 5;

/// `17:` at the start of `query`: an id prefix, to tantivy a field named `17`.
fn id_prefix(query: &str) -> Option<&str> {
    let (prefix, _) = query.split_once(':')?;
    (!prefix.is_empty() && prefix.bytes().all(|byte| byte.is_ascii_digit())).then_some(prefix)
}

impl QueryLog {
    pub fn read(path: &Path) -> Result<QueryLog, TuningError> {
        let bytes = std::fs::read(path).map_err(|err| {
            TuningError::log(format!("query log {}: cannot read: {err}", path.display()))
        })?;
        let log = QueryLog::parse(&bytes, &path.display().to_string());
        if log.queries.is_empty() {
            return Err(log.nothing_usable());
        }
        Ok(log)
    }

    /// The error for this log when none of its lines can be used (`problems` located): the
    /// file, how many lines, the first bad ones, and a hint when every query starts like an id
    /// (`17:words`, which tantivy reads as a field named `17`).
    pub fn nothing_usable(&self) -> TuningError {
        let count = |kind| {
            self.problems
                .iter()
                .filter(|problem| problem.kind == kind)
                .count()
        };
        let mut message = format!(
            "query log {}: no usable query in its {} lines ({} blank, {} unreadable, {} \
             distinct queries that do not parse)",
            self.source,
            self.lines,
            count(ProblemKind::Blank),
            count(ProblemKind::Unreadable),
            count(ProblemKind::Query),
        );
        if !self.problems.is_empty() {
            message.push_str("; the first:");
            for problem in self.problems.iter().take(SHOWN_PROBLEMS) {
                message.push_str(&format!(
                    "\n  {}:{}: {}",
                    self.source, problem.line, problem.message
                ));
            }
        }
        if self.query_lines > 0 && self.id_prefixed_lines == self.query_lines {
            let example = self
                .queries
                .first()
                .and_then(|query| id_prefix(&query.text))
                .unwrap_or("17");
            message.push_str(&format!(
                "\nhint: every line starts with a number and a colon (`{example}:`), which looks \
                 like an id prefix rather than part of the query (tantivy reads `{example}:` as a \
                 field named `{example}`); remove it first, e.g. `sed 's/^[0-9]*://' {} > \
                 queries.txt`",
                self.source
            ));
        }
        TuningError::log(message)
    }

    pub fn parse(bytes: &[u8], source: &str) -> QueryLog {
        let mut log = QueryLog {
            source: source.to_string(),
            ..QueryLog::default()
        };
        let mut positions: HashMap<String, usize> = HashMap::new();
        let mut lines = bytes.split(|byte| *byte == b'\n').peekable();
        let mut number = 0u64;
        while let Some(raw) = lines.next() {
            // The empty piece after a final newline is not a line.
            if raw.is_empty() && lines.peek().is_none() {
                break;
            }
            number += 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let mut problem = |kind, message: String| {
                log.problems.push(LineProblem {
                    line: number,
                    kind,
                    message,
                })
            };
            let text = match std::str::from_utf8(raw) {
                Ok(text) => text,
                Err(err) => {
                    problem(
                        ProblemKind::Unreadable,
                        format!("not UTF-8 (byte {})", err.valid_up_to() + 1),
                    );
                    continue;
                }
            };
            let (weight, query) = match text.split_once('\t') {
                Some((count, query)) => match count.trim().parse::<u64>() {
                    Ok(count) if count > 0 => (count, query),
                    _ => {
                        problem(
                            ProblemKind::Unreadable,
                            format!(
                                "`{count}` before the tab is not a positive count \
                                 (lines are `query` or `count<TAB>query`)"
                            ),
                        );
                        continue;
                    }
                },
                None => (1, text),
            };
            let query = query.trim();
            if query.is_empty() {
                problem(ProblemKind::Blank, "no query on this line".into());
                continue;
            }
            log.query_lines += 1;
            if id_prefix(query).is_some() {
                log.id_prefixed_lines += 1;
            }
            match positions.get(query) {
                Some(&position) => log.queries[position].weight += weight,
                None => {
                    positions.insert(query.to_string(), log.queries.len());
                    log.queries.push(LoggedQuery {
                        text: query.to_string(),
                        weight,
                        first_line: number,
                    });
                }
            }
        }
        log.lines = number;
        log
    }

    /// Queries asked, counts included.
    pub fn volume(&self) -> u64 {
        self.queries.iter().map(|query| query.weight).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_repeats_weights_and_locates_bad_lines() {
        let log = QueryLog::parse(
            b"python web\n3\tpython web\n\n  \nx\tfoo\n0\tbar\nbad \xff utf8\r\ndjango\r\n",
            "test.log",
        );
        assert_eq!(log.lines, 8);
        let summary: Vec<(&str, u64, u64)> = log
            .queries
            .iter()
            .map(|query| (query.text.as_str(), query.weight, query.first_line))
            .collect();
        assert_eq!(summary, vec![("python web", 4, 1), ("django", 1, 8)]);
        let problems: Vec<(u64, ProblemKind)> = log
            .problems
            .iter()
            .map(|problem| (problem.line, problem.kind))
            .collect();
        assert_eq!(
            problems,
            vec![
                (3, ProblemKind::Blank),
                (4, ProblemKind::Blank),
                (5, ProblemKind::Unreadable),
                (6, ProblemKind::Unreadable),
                (7, ProblemKind::Unreadable),
            ]
        );
        assert!(
            log.problems[4].message.contains("byte 5"),
            "{:?}",
            log.problems[4]
        );
        assert_eq!(log.volume(), 5);
    }

    #[test]
    fn a_log_without_queries_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.log");
        std::fs::write(&path, b"\n\n").unwrap();
        let err = QueryLog::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("empty.log") && err.contains("no usable query in its 2 lines"),
            "{err}"
        );
        assert!(err.contains("empty.log:1: no query on this line"), "{err}");
        assert!(!err.contains("hint"), "{err}");
        let missing = QueryLog::read(&dir.path().join("missing.log")).unwrap_err();
        assert!(missing.to_string().contains("missing.log"), "{missing}");
    }

    #[test]
    fn a_log_of_id_prefixed_lines_gets_a_hint_and_others_do_not() {
        let log = QueryLog::parse(
            b"1:miami white pages\n2:delta air lines\n\n3\t3:hsn\n",
            "web.txt",
        );
        assert_eq!((log.query_lines, log.id_prefixed_lines), (3, 3));
        let err = log.nothing_usable().to_string();
        assert!(
            err.contains("hint") && err.contains("`1:`") && err.contains("web.txt"),
            "{err}"
        );
        // One line without the prefix: not an id column.
        let log = QueryLog::parse(b"1:miami white pages\ntitle:delta\n", "mixed.txt");
        assert_eq!((log.query_lines, log.id_prefixed_lines), (2, 1));
        assert!(!log.nothing_usable().to_string().contains("hint"));
        // A field name is not an id.
        assert_eq!(id_prefix("title:x"), None);
        assert_eq!(id_prefix(":x"), None);
        assert_eq!(id_prefix("12:x"), Some("12"));
    }
}
