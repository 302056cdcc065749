//! A generated sample corpus for the quickstart, so that it needs no data from elsewhere:
//! technical "articles" with Zipf-distributed words, authors, tags, years and citation counts,
//! the same every time (fixed seed), plus a matching schema and rules file.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

pub const SCHEMA: &str = r#"# Schema of the generated quickstart sample.
id_field = "id"
default_search_fields = ["title", "body"]

[[field]]
name = "id"
type = "u64"

[[field]]
name = "title"
type = "text"
stored = true

[[field]]
name = "body"
type = "text"
stored = true

[[field]]
name = "tags"
type = "keyword"
stored = true

[[field]]
name = "year"
type = "u64"
stored = true
fast = true

[[field]]
name = "citations"
type = "u64"
stored = true
fast = true
"#;

/// About a third of the sample is hot: the cited and the recent articles.
pub const RULES: &str = r#"# Rules of the quickstart sample: cited or recent articles are hot.
hot = ["citations >= 20", "year >= 2024"]
"#;

const TOPICS: &[&str] = &[
    "search",
    "index",
    "storage",
    "cache",
    "query",
    "compression",
    "network",
    "database",
    "scheduler",
    "compiler",
    "parser",
    "replication",
    "consensus",
    "kernel",
    "memory",
    "latency",
    "throughput",
    "ranking",
    "tokenizer",
    "shard",
    "segment",
    "merge",
    "checksum",
    "protocol",
];
const WORDS: &[&str] = &[
    "fast",
    "distributed",
    "adaptive",
    "incremental",
    "parallel",
    "robust",
    "lazy",
    "tiered",
    "compact",
    "streaming",
    "exact",
    "approximate",
    "secure",
    "portable",
    "scalable",
    "simple",
    "analysis",
    "design",
    "evaluation",
    "study",
    "system",
    "method",
    "model",
    "algorithm",
    "structure",
    "technique",
    "framework",
    "approach",
    "experience",
    "survey",
];
const AUTHORS: &[&str] = &[
    "Ada Byron",
    "Alan Turing",
    "Grace Hopper",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Frances Allen",
    "Leslie Lamport",
    "Ken Thompson",
    "Margaret Hamilton",
    "Niklaus Wirth",
    "Radia Perlman",
    "Tony Hoare",
    "Jim Gray",
    "Karen Sparck Jones",
];

/// splitmix64: tiny, seedable, good enough for sample data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Roughly Zipf: small indexes much more often than large ones.
    fn skewed(&mut self, n: usize) -> usize {
        let uniform = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(uniform) - 1.0) as usize % n
    }
}

fn sentence(rng: &mut Rng, words: usize) -> String {
    let mut text = String::new();
    for index in 0..words {
        if index > 0 {
            text.push(' ');
        }
        let word = if rng.below(3) == 0 {
            TOPICS[rng.skewed(TOPICS.len())]
        } else {
            WORDS[rng.skewed(WORDS.len())]
        };
        text.push_str(word);
    }
    text
}

/// Writes `documents` sample documents as JSON Lines.
pub fn write_documents(path: &Path, documents: u64) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut rng = Rng(0x0074_6965_7264_6578);
    let mut line = String::new();
    for id in 1..=documents {
        let title = format!(
            "{} {} for {} {}",
            capitalize(WORDS[rng.skewed(WORDS.len())]),
            TOPICS[rng.skewed(TOPICS.len())],
            TOPICS[rng.below(TOPICS.len())],
            WORDS[16 + rng.below(WORDS.len() - 16)]
        );
        let body_words = 20 + rng.below(40);
        let body = sentence(&mut rng, body_words);
        let tags: Vec<&str> = (0..1 + rng.below(3))
            .map(|_| TOPICS[rng.skewed(TOPICS.len())])
            .collect();
        let authors = AUTHORS[rng.below(AUTHORS.len())];
        let year = 2025 - rng.skewed(31) as u64;
        let citations = rng.skewed(60) as u64;
        line.clear();
        write!(
            line,
            "{}",
            serde_json::json!({
                "id": id,
                "title": title,
                "body": body,
                "tags": tags,
                "author": authors,
                "year": year,
                "citations": citations,
            })
        )
        .expect("writing to a String");
        writeln!(out, "{line}")?;
    }
    out.flush()
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_deterministic_and_parses() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
        write_documents(&a, 200).unwrap();
        write_documents(&b, 200).unwrap();
        let text = std::fs::read_to_string(&a).unwrap();
        assert_eq!(text, std::fs::read_to_string(&b).unwrap());
        assert_eq!(text.lines().count(), 200);
        for line in text.lines() {
            let doc: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(doc["year"].as_u64().unwrap() <= 2025 && doc["title"].is_string());
        }
        crate::schema::IndexSchema::from_toml_str(SCHEMA, "sample schema").unwrap();
    }
}
