use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, ListBuilder, StringArray, StringBuilder,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::record_batch::RecordBatch;

use super::*;
use crate::schema::IndexSchema;

fn schema() -> IndexSchema {
    IndexSchema::from_toml_str(
        r#"
id_field = "id"
[[field]]
name = "id"
type = "u64"
[[field]]
name = "title"
type = "text"
[[field]]
name = "tags"
type = "keyword"
[[field]]
name = "score"
type = "f64"
[[field]]
name = "public"
type = "bool"
[[field]]
name = "when"
type = "date"
[[field]]
name = "limit"
type = "u64"
"#,
        "schema.toml",
    )
    .unwrap()
}

/// Five rows; row 4 is all NULL but its id.
fn batch(schema: &IndexSchema) -> RecordBatch {
    let mut tags = ListBuilder::new(StringBuilder::new());
    for row in [vec!["a", "b"], vec!["c"], vec![], vec!["b"]] {
        for tag in row {
            tags.values().append_value(tag);
        }
        tags.append(true);
    }
    tags.append(false);
    let day = 86_400_000_000i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(vec![1, 2, 3, 4, 5])),
        Arc::new(StringArray::from(vec![
            Some("Rust Search"),
            Some("rusty"),
            Some("Go"),
            Some("x"),
            None,
        ])),
        Arc::new(tags.finish()),
        Arc::new(Float64Array::from(vec![
            Some(1.5),
            Some(3.0),
            Some(0.0),
            Some(10.0),
            None,
        ])),
        Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            Some(true),
            Some(false),
            None,
        ])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![
                Some(0),
                Some(day),
                Some(10 * day),
                Some(400 * day),
                None,
            ])
            .with_timezone("UTC"),
        ),
        Arc::new(UInt64Array::from(vec![
            Some(1),
            Some(3),
            Some(7),
            Some(10),
            None,
        ])),
    ];
    RecordBatch::try_new(schema.input_arrow.clone(), columns).unwrap()
}

/// The ids of the rows the expressions select.
fn select(expressions: &[&str]) -> Vec<u64> {
    let schema = schema();
    let spec = RulesSpec {
        hot: expressions.iter().map(|e| e.to_string()).collect(),
        budget: None,
        hot_ids: None,
    };
    let rules = CompiledRules::new(spec, "rules.toml", &schema).unwrap();
    let mask = rules.select_hot(&batch(&schema)).unwrap();
    assert_eq!(mask.null_count(), 0);
    (0..mask.len())
        .filter(|&row| mask.value(row))
        .map(|row| row as u64 + 1)
        .collect()
}

fn error(expression: &str) -> RulesError {
    let spec = RulesSpec {
        hot: vec![expression.to_string()],
        budget: None,
        hot_ids: None,
    };
    CompiledRules::new(spec, "rules.toml", &schema()).unwrap_err()
}

#[test]
fn comparisons_and_boolean_logic() {
    assert_eq!(select(&["score >= 3"]), vec![2, 4]);
    assert_eq!(select(&["3 <= score"]), vec![2, 4]);
    assert_eq!(select(&["score > 1 AND public"]), vec![1]);
    assert_eq!(select(&["score > 1 OR public"]), vec![1, 2, 3, 4]);
    assert_eq!(select(&["NOT public"]), vec![2, 4]);
    assert_eq!(select(&["score != 3"]), vec![1, 3, 4]);
    assert_eq!(
        select(&["id = 2", "id = 5"]),
        vec![2, 5],
        "any expression makes a row hot"
    );
    assert_eq!(select(&["true"]), vec![1, 2, 3, 4, 5]);
    assert_eq!(select(&[]), Vec::<u64>::new());
    assert_eq!(select(&["(((id = 3)))"]), vec![3]);
}

#[test]
fn null_is_unknown_and_unknown_is_not_hot() {
    assert_eq!(
        select(&["NOT (score > 100)"]),
        vec![1, 2, 3, 4],
        "row 5 stays unknown"
    );
    assert_eq!(select(&["score IS NULL"]), vec![5]);
    assert_eq!(
        select(&["title IS NOT NULL AND tags IS NULL"]),
        Vec::<u64>::new()
    );
    assert_eq!(select(&["tags IS NULL"]), vec![5]);
    assert_eq!(select(&["score > 100 OR id = 5"]), vec![5]);
}

#[test]
fn in_between_like() {
    assert_eq!(select(&["id IN (1, 3, 99)"]), vec![1, 3]);
    assert_eq!(select(&["id NOT IN (1, 3)"]), vec![2, 4, 5]);
    assert_eq!(select(&["score BETWEEN 1 AND 3"]), vec![1, 2]);
    assert_eq!(select(&["score NOT BETWEEN 1 AND 3"]), vec![3, 4]);
    assert_eq!(select(&["title LIKE 'Rust%'"]), vec![1]);
    assert_eq!(select(&["title ILIKE 'rust%'"]), vec![1, 2]);
    assert_eq!(select(&["title NOT LIKE '%s%'"]), vec![3, 4]);
}

#[test]
fn multi_valued_keywords_match_any_value() {
    assert_eq!(select(&["tags = 'b'"]), vec![1, 4]);
    assert_eq!(
        select(&["tags != 'b'"]),
        vec![2, 3],
        "no value is 'b'; NULL list stays unknown"
    );
    assert_eq!(select(&["tags IN ('c', 'z')"]), vec![2]);
    assert_eq!(select(&["tags LIKE '_'"]), vec![1, 2, 4]);
    assert_eq!(select(&["tags > 'a'"]), vec![1, 2, 4]);
}

#[test]
fn literals_take_the_field_type() {
    assert_eq!(
        select(&["limit > 2.5"]),
        vec![2, 3, 4],
        "u64 against a float compares as f64"
    );
    assert_eq!(select(&["limit > -1"]), vec![1, 2, 3, 4]);
    assert_eq!(select(&["when >= '1970-01-02'"]), vec![2, 3, 4]);
    assert_eq!(select(&["when < '1970-01-05T00:00:00Z'"]), vec![1, 2]);
    assert_eq!(select(&["public = false"]), vec![2, 4]);
    assert_eq!(select(&["score < limit"]), vec![3], "field against field");
    assert_eq!(
        select(&["SCORE >= 10"]),
        vec![4],
        "unquoted names are case-insensitive"
    );
}

#[test]
fn errors_name_kind_entry_and_column() {
    let err = error("scor > 1");
    assert_eq!(err.kind(), RulesErrorKind::UnknownField);
    assert_eq!((err.entry.as_str(), err.column), ("hot[0]", 1));
    assert!(err.to_string().contains("unknown field `scor`"), "{err}");
    assert!(err.to_string().contains("\n    scor > 1\n    ^"), "{err}");

    let err = error("id = 1 AND title > 3");
    assert_eq!(err.kind(), RulesErrorKind::TypeMismatch);
    assert_eq!(err.column, 20);

    let err = error("when > 'not a date'");
    assert_eq!(err.kind(), RulesErrorKind::TypeMismatch);
    assert!(err.message.contains("not a date"), "{err}");

    let err = error("id = NULL");
    assert!(err.message.contains("IS NULL"), "{err}");

    let err = error("id > (1");
    assert_eq!(err.kind(), RulesErrorKind::Syntax);
    assert!(err.column > 0, "{err}");

    let err = error("title");
    assert_eq!(
        err.kind(),
        RulesErrorKind::TypeMismatch,
        "a text field is not a condition"
    );

    let err = error("id + 1 > 2");
    assert_eq!(err.kind(), RulesErrorKind::Unsupported);

    let err = error("\"Score\" > 1");
    assert_eq!(
        err.kind(),
        RulesErrorKind::UnknownField,
        "quoted names are exact"
    );
}

#[test]
fn budget_rank_by_is_checked() {
    let schema = schema();
    let with_budget = |rank_by: &str| {
        let spec = RulesSpec {
            hot: vec!["true".into()],
            budget: Some(BudgetSpec {
                max_hot_docs: 2,
                rank_by: Some(rank_by.into()),
            }),
            hot_ids: None,
        };
        CompiledRules::new(spec, "rules.toml", &schema)
    };
    assert!(with_budget("score DESC").is_ok());
    assert!(with_budget("score asc").is_ok());
    assert!(
        with_budget("nope DESC")
            .unwrap_err()
            .to_string()
            .contains("unknown field `nope`")
    );
    assert!(
        with_budget("score SIDEWAYS")
            .unwrap_err()
            .to_string()
            .contains("ASC or DESC")
    );
}

#[test]
fn budget_selector_keeps_the_best_and_breaks_ties_by_position() {
    let schema = schema();
    let spec = RulesSpec {
        hot: vec!["true".into()],
        budget: Some(BudgetSpec {
            max_hot_docs: 2,
            rank_by: Some("score DESC".into()),
        }),
        hot_ids: None,
    };
    let rules = CompiledRules::new(spec, "rules.toml", &schema).unwrap();
    let (_, rank) = rules.budget().unwrap();
    let batch = batch(&schema);
    let keys = rank.keys(&batch).unwrap().unwrap();
    let mut selector = BudgetSelector::new(2);
    for row in 0..batch.num_rows() {
        selector.offer(
            keys.row(row).as_ref(),
            RankPosition {
                file: 0,
                row: row as u64,
            },
        );
    }
    let cut = selector.finish();
    let admitted: Vec<usize> = (0..batch.num_rows())
        .filter(|&row| {
            cut.admits(
                keys.row(row).as_ref(),
                RankPosition {
                    file: 0,
                    row: row as u64,
                },
            )
        })
        .collect();
    assert_eq!(admitted, vec![1, 3], "scores 3.0 and 10.0; NULL ranks last");

    let mut ties = BudgetSelector::new(1);
    ties.offer(b"k", RankPosition { file: 1, row: 5 });
    ties.offer(b"k", RankPosition { file: 0, row: 9 });
    let cut = ties.finish();
    assert!(cut.admits(b"k", RankPosition { file: 0, row: 9 }));
    assert!(!cut.admits(b"k", RankPosition { file: 1, row: 5 }));
    assert!(matches!(BudgetSelector::new(5).finish(), HotCut::All));
}

#[test]
fn pinned_ids_are_hot_whatever_the_expressions() {
    let schema = schema();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pins.txt"), "2\n\n5\n99\n").unwrap();
    let rules_path = dir.path().join("rules.toml");
    let text = "hot = [\"score > 1000\"]\nhot_ids = \"pins.txt\"\n";
    let rules =
        CompiledRules::from_toml_str(text, &rules_path.display().to_string(), &schema).unwrap();
    assert_eq!(rules.pinned(), 3);
    let selected = rules.select_hot(&batch(&schema)).unwrap();
    let hot: Vec<bool> = (0..selected.len()).map(|row| selected.value(row)).collect();
    assert_eq!(hot, vec![false, true, false, false, true]);

    // A pin list that cannot be read names the rules file, the entry and the list.
    let missing = "hot = []\nhot_ids = \"absent.txt\"\n";
    let err = CompiledRules::from_toml_str(missing, &rules_path.display().to_string(), &schema)
        .unwrap_err();
    assert_eq!(err.kind(), RulesErrorKind::File);
    let message = err.to_string();
    assert!(
        message.contains("rules.toml")
            && message.contains("hot_ids")
            && message.contains("absent.txt"),
        "{message}"
    );
}
