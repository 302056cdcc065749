use proptest::prelude::*;

use super::*;

const SCHEMA: &str = r#"
id_field = "id"
[[field]]
name = "id"
type = "u64"
[[field]]
name = "title"
type = "text"
[[field]]
name = "downloads"
type = "u64"
fast = true
[[field]]
name = "rating"
type = "f64"
fast = true
[[field]]
name = "released"
type = "date"
fast = true
[[field]]
name = "size"
type = "i64"
"#;

fn schema_with(ranking: &str) -> IndexSchema {
    IndexSchema::from_toml_str(&format!("{SCHEMA}\n{ranking}"), "schema.toml").unwrap()
}

fn compile_one(score: &str) -> Result<RankProfiles, RankingError> {
    let schema = schema_with(&format!("[ranking.p]\nscore = {score:?}\n"));
    RankProfiles::compile(&schema, "schema.toml")
}

fn profile(score: &str) -> Arc<RankProfile> {
    let schema = schema_with(&format!("[ranking.p]\nscore = {score:?}\n"));
    RankProfiles::compile(&schema, "schema.toml")
        .unwrap()
        .choose(&schema, "p", "")
        .unwrap()
}

#[test]
fn evaluates_the_issue_example() {
    let profile = profile("bm25 * (1 + 0.3 * ln(1 + downloads))");
    assert_eq!(profile.inputs().len(), 1);
    assert_eq!(profile.inputs()[0].name, "downloads");
    let rank = profile.rank(2.0, &[Some(99.0)]);
    let expected = 2.0 * (1.0 + 0.3 * (100.0f64).ln());
    assert!((rank - expected).abs() < 1e-12, "{rank} vs {expected}");
    assert_eq!(profile.reported_score(2.0, rank), rank);
    // A missing field makes the score NULL: last.
    assert_eq!(profile.rank(2.0, &[None]), f64::NEG_INFINITY);
}

/// An expression, its inputs' values, and the value expected.
type Case = (&'static str, &'static [Option<f64>], Option<f64>);

#[test]
fn functions_and_null_handling() {
    let cases: &[Case] = &[
        ("coalesce(downloads, 7)", &[None], Some(7.0)),
        ("coalesce(downloads, 7)", &[Some(3.0)], Some(3.0)),
        ("min(downloads, 10, 4)", &[Some(5.0)], Some(4.0)),
        ("max(downloads, -2)", &[Some(5.0)], Some(5.0)),
        ("log10(downloads)", &[Some(1000.0)], Some(3.0)),
        ("sqrt(downloads)", &[Some(16.0)], Some(4.0)),
        ("ln(downloads)", &[Some(0.0)], None),
        ("sqrt(-downloads)", &[Some(4.0)], None),
        ("1 / downloads", &[Some(0.0)], None),
        ("-downloads + 2 * 3 - 1", &[Some(1.0)], Some(4.0)),
    ];
    for (text, values, expected) in cases {
        let profile = profile(text);
        let got = match &profile.rule {
            RankRule::Score(expression) => expression.evaluate(1.0, values),
            _ => unreachable!(),
        };
        assert_eq!(got, *expected, "{text}");
    }
}

#[test]
fn errors_name_the_profile_and_column() {
    let cases = [
        (
            "bm25 * ln(1 + dowloads)",
            RankingErrorKind::UnknownField,
            15,
            "dowloads",
        ),
        ("bm25 * title", RankingErrorKind::TypeMismatch, 8, "title"),
        ("bm25 + size", RankingErrorKind::NotFast, 8, "fast = true"),
        (
            "bm25 * frob(downloads)",
            RankingErrorKind::Unsupported,
            8,
            "frob",
        ),
        ("bm25 * (1 + ", RankingErrorKind::Syntax, 13, "syntax error"),
        ("bm25 * 'a'", RankingErrorKind::TypeMismatch, 8, "numbers"),
        (
            "ln(downloads, 2)",
            RankingErrorKind::Syntax,
            1,
            "one argument",
        ),
        (
            "bm25 bm25",
            RankingErrorKind::Syntax,
            6,
            "after the expression",
        ),
    ];
    for (text, kind, column, mentions) in cases {
        let err = compile_one(text).unwrap_err();
        assert_eq!(err.kind(), kind, "{text}: {err}");
        assert_eq!(err.column, column, "{text}: {err}");
        assert_eq!(err.entry, "ranking.p.score");
        let shown = err.to_string();
        assert!(shown.contains(mentions), "{text}: {shown}");
        assert!(
            shown.starts_with("schema.toml: ranking.p.score:"),
            "{shown}"
        );
    }
}

#[test]
fn order_by_in_profiles_and_requests() {
    let schema = schema_with("[ranking.recent]\norder_by = \"released DESC\"\n");
    let profiles = RankProfiles::compile(&schema, "schema.toml").unwrap();
    let recent = profiles.choose(&schema, "recent", "").unwrap();
    assert_eq!(recent.label, "recent");
    assert!(recent.rank(0.0, &[Some(2.0)]) > recent.rank(9.0, &[Some(1.0)]));
    assert_eq!(recent.rank(0.0, &[None]), f64::NEG_INFINITY);
    assert_eq!(recent.reported_score(1.5, 2.0), 1.5);
    let ascending = profiles.choose(&schema, "recent", "rating  asc").unwrap();
    assert_eq!(ascending.label, "order_by:rating ASC");
    assert!(ascending.rank(0.0, &[Some(1.0)]) > ascending.rank(0.0, &[Some(2.0)]));
    for (order_by, kind, column) in [
        ("rating SIDEWAYS", RankingErrorKind::Syntax, 8),
        ("  nope DESC", RankingErrorKind::UnknownField, 3),
        ("title DESC", RankingErrorKind::TypeMismatch, 1),
        ("size DESC", RankingErrorKind::NotFast, 1),
        ("rating DESC x", RankingErrorKind::Syntax, 13),
    ] {
        let err = profiles.choose(&schema, "", order_by).unwrap_err();
        assert_eq!(
            (err.kind(), err.column),
            (kind, column),
            "{order_by}: {err}"
        );
        assert!(err.to_string().starts_with("request: order_by:"), "{err}");
    }
}

#[test]
fn default_profile_and_unknown_names() {
    let schema =
        schema_with("[ranking.default]\nscore = \"bm25 * 2\"\n[ranking.plain]\nscore = \"bm25\"\n");
    let profiles = RankProfiles::compile(&schema, "schema.toml").unwrap();
    assert_eq!(profiles.choose(&schema, "", "").unwrap().label, "default");
    assert_eq!(profiles.choose(&schema, "bm25", "").unwrap().label, "bm25");
    let err = profiles.choose(&schema, "nope", "").unwrap_err();
    assert_eq!(err.kind(), RankingErrorKind::UnknownProfile);
    // Also when an order overrides it.
    let with_order = profiles.choose(&schema, "nope", "rating DESC").unwrap_err();
    assert_eq!(with_order.kind(), RankingErrorKind::UnknownProfile);
    assert!(err.to_string().contains("`nope`"), "{err}");
    assert!(err.to_string().contains("default, plain"), "{err}");
    let plain = schema_with("");
    let profiles = RankProfiles::compile(&plain, "schema.toml").unwrap();
    assert_eq!(
        profiles.choose(&plain, "", "").unwrap().rule,
        RankRule::Bm25
    );

    for bad in [
        "[ranking.both]\nscore = \"bm25\"\norder_by = \"rating DESC\"\n",
        "[ranking.none]\n",
        "[ranking.\"a b\"]\nscore = \"bm25\"\n",
    ] {
        let schema = schema_with(bad);
        let err = RankProfiles::compile(&schema, "schema.toml").unwrap_err();
        assert_eq!(err.kind(), RankingErrorKind::Profile, "{bad}: {err}");
    }
}

const EXPRESSIONS: &[&str] = &[
    "bm25 * (1 + 0.3 * ln(1 + downloads))",
    "bm25 + coalesce(rating, 2.5) - downloads / 1000",
    "max(bm25, sqrt(downloads)) * min(rating, 3)",
    "bm25 / (1 + rating) + log10(coalesce(downloads, 1))",
    "-bm25 * rating",
    "coalesce(rating, downloads, -1) * (released / 86400 - 19000)",
];

fn range_strategy() -> impl Strategy<Value = (f64, f64, bool)> {
    (-50.0f64..50.0, 0.0f64..100.0, any::<bool>())
        .prop_map(|(low, width, missing)| (low, low + width, missing))
}

proptest! {
    /// No document whose inputs lie within the ranges scores above the bound.
    #[test]
    fn upper_bound_holds_for_every_document_in_range(
        which in 0..EXPRESSIONS.len(),
        bm25_max in 0.0f64..30.0,
        ranges in proptest::collection::vec(range_strategy(), 3),
        picks in proptest::collection::vec((0.0f64..=1.0, 0.0f64..=1.0, any::<bool>()), 1..40),
    ) {
        let profile = profile(EXPRESSIONS[which]);
        let inputs = profile.inputs().len();
        let value_ranges: Vec<ValueRange> = ranges[..inputs]
            .iter()
            .map(|&(low, high, missing)| ValueRange { values: Some((low, high)), may_be_missing: missing })
            .collect();
        let bound = profile.upper_bound(bm25_max, &value_ranges);
        for (bm25_at, value_at, absent) in picks {
            let values: Vec<Option<f64>> = ranges[..inputs]
                .iter()
                .map(|&(low, high, missing)| (!(missing && absent)).then_some(low + (high - low) * value_at))
                .collect();
            let rank = profile.rank((bm25_max * bm25_at) as f32, &values);
            // bm25 as f32 can round above bm25_max: compare against the bound at the rounded
            // maximum the node would use.
            let bound = bound.max(profile.upper_bound(f64::from(bm25_max as f32), &value_ranges));
            prop_assert!(rank <= bound, "{}: rank {rank} above bound {bound}", EXPRESSIONS[which]);
        }
    }
}

#[test]
fn bounds_of_order_by_and_always_null() {
    let schema = schema_with("");
    let profiles = RankProfiles::compile(&schema, "s").unwrap();
    let desc = profiles.choose(&schema, "", "rating DESC").unwrap();
    let asc = profiles.choose(&schema, "", "rating ASC").unwrap();
    let range = ValueRange {
        values: Some((-2.0, 5.0)),
        may_be_missing: true,
    };
    assert_eq!(desc.upper_bound(f64::INFINITY, &[range]), 5.0);
    assert_eq!(asc.upper_bound(f64::INFINITY, &[range]), 2.0);
    let empty = ValueRange {
        values: None,
        may_be_missing: true,
    };
    assert_eq!(desc.upper_bound(1.0, &[empty]), f64::NEG_INFINITY);
    let ln = profile("ln(downloads) + bm25");
    let negative = ValueRange {
        values: Some((-3.0, -1.0)),
        may_be_missing: false,
    };
    assert_eq!(ln.upper_bound(10.0, &[negative]), f64::NEG_INFINITY);
}

/// A random score expression over `bm25` and the test schema's fast fields: monotone in BM25
/// or not (subtraction, division, negation and `min` break it).
pub(crate) fn expression_strategy() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("bm25".to_string()),
        Just("downloads".to_string()),
        Just("rating".to_string()),
        Just("released".to_string()),
        (-4i32..9).prop_map(|n| format!("{}", f64::from(n) * 0.5)),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} + {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} - {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} * {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} / {b})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            inner.clone().prop_map(|a| format!("ln({a})")),
            inner.clone().prop_map(|a| format!("log10({a})")),
            inner.clone().prop_map(|a| format!("sqrt({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("coalesce({a}, {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("min({a}, {b})")),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(a, b, c)| format!("max({a}, {b}, {c})")),
        ]
    })
}

fn value_strategy() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        Just(Some(0.0)),
        Just(Some(-0.0)),
        Just(Some(f64::INFINITY)),
        (-1e3f64..1e3).prop_map(Some),
        (-1e300f64..1e300).prop_map(Some),
    ]
}

proptest! {
    /// The flat program gives, bit for bit, what walking the expression's tree gives.
    #[test]
    fn the_flat_program_evaluates_as_the_tree(
        text in expression_strategy(),
        bm25 in prop_oneof![Just(0.0f64), 0.0f64..40.0],
        values in proptest::collection::vec(value_strategy(), 3),
    ) {
        let profile = profile(&text);
        let RankRule::Score(expression) = &profile.rule else { unreachable!() };
        let values = &values[..expression.inputs().len()];
        let tree = expression.evaluate_tree(bm25, values);
        let flat = expression.evaluate(bm25, values);
        prop_assert_eq!(tree.map(f64::to_bits), flat.map(f64::to_bits), "{}: {:?}", text, values);
    }

    /// Every document scoring at most the skippable score ranks below the floor, whatever the
    /// expression.
    #[test]
    fn documents_at_or_below_the_skippable_score_rank_below_the_floor(
        text in expression_strategy(),
        floor in -20.0f64..60.0,
        ranges in proptest::collection::vec(range_strategy(), 3),
        picks in proptest::collection::vec((0.0f64..=1.0, 0.0f64..=1.0, any::<bool>()), 1..40),
    ) {
        let profile = profile(&text);
        let inputs = profile.inputs().len();
        let value_ranges: Vec<ValueRange> = ranges[..inputs]
            .iter()
            .map(|&(low, high, missing)| ValueRange { values: Some((low, high)), may_be_missing: missing })
            .collect();
        let Some(skippable) = profile.skippable_score(floor, &value_ranges) else {
            return Ok(());
        };
        prop_assert!(skippable >= 0.0);
        for (score_at, value_at, absent) in picks {
            let score = (f64::from(skippable.min(1e6)) * score_at) as f32;
            let score = if score_at == 1.0 { skippable } else { score.min(skippable) };
            let values: Vec<Option<f64>> = ranges[..inputs]
                .iter()
                .map(|&(low, high, missing)| (!(missing && absent)).then_some(low + (high - low) * value_at))
                .collect();
            let rank = profile.rank(score, &values);
            prop_assert!(rank < floor, "{}: score {score} (skippable {skippable}) ranks {rank}, floor {floor}", text);
        }
    }
}

#[test]
fn a_rank_growing_with_bm25_gives_the_lowest_score_that_can_reach_the_floor() {
    // bm25 * (1 + downloads) with downloads in [0, 3]: the best factor is 4, so a document
    // needs a score of floor / 4.
    let boosted = profile("bm25 * (1 + downloads)");
    let ranges = [ValueRange {
        values: Some((0.0, 3.0)),
        may_be_missing: false,
    }];
    let skippable = boosted.skippable_score(10.0, &ranges).unwrap();
    assert!(skippable < 2.5 && skippable.next_up() >= 2.5, "{skippable}");
    // A rank that does not grow with the score prunes nothing until no score can reach.
    let falling = profile("10 - bm25");
    assert_eq!(falling.skippable_score(5.0, &[]), None);
    assert_eq!(falling.skippable_score(10.5, &[]), Some(f32::MAX));
    // Plain BM25 and order_by have their own thresholds.
    assert_eq!(RankProfile::bm25().skippable_score(1.0, &[]), None);
}
