//! Score expressions: sqlparser AST → `Expression`, checked against the schema, evaluated per
//! document in `f64`, and bounded over value ranges (interval arithmetic) for the cold skip.
//!
//! NULL (a field without a value, a function outside its domain, a division by zero)
//! propagates through every operator and function but `coalesce`; a document whose score is
//! NULL ranks after every document that has one.

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Spanned, UnaryOperator,
    Value,
};
use sqlparser::tokenizer::Span;

use super::program::Program;
use super::{Located, RankingErrorKind, ValueKind};
use crate::rules::parse_expression;
use crate::schema::IndexSchema;

/// The name that stands for the document's BM25 score.
pub const BM25: &str = "bm25";

/// A fast field an expression reads, in the order of `Expression::inputs`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldInput {
    /// Schema field index.
    pub field: usize,
    pub name: String,
    pub kind: ValueKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Function {
    Ln,
    Log10,
    Sqrt,
    Min,
    Max,
    Coalesce,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Operator {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Bm25,
    /// Index into `Expression::inputs`.
    Input(usize),
    Literal(f64),
    Negate(Box<Node>),
    Binary(Operator, Box<Node>, Box<Node>),
    Call(Function, Vec<Node>),
}

/// A checked score expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    root: Node,
    /// `root` as the flat program documents are ranked with.
    program: Program,
    inputs: Vec<FieldInput>,
    reads_bm25: bool,
}

/// What values a field takes over a set of documents (a tier): `values` is `None` when no
/// document has one.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ValueRange {
    pub values: Option<(f64, f64)>,
    pub may_be_missing: bool,
}

impl ValueRange {
    /// The range of no document.
    pub const EMPTY: ValueRange = ValueRange {
        values: None,
        may_be_missing: false,
    };

    /// What the values of two sets of documents range over together.
    pub fn union(self, other: ValueRange) -> ValueRange {
        ValueRange {
            values: match (self.values, other.values) {
                (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
                (one, None) | (None, one) => one,
            },
            may_be_missing: self.may_be_missing || other.may_be_missing,
        }
    }
}

impl Expression {
    /// The fast fields the expression reads; `evaluate` takes their values in this order.
    pub fn inputs(&self) -> &[FieldInput] {
        &self.inputs
    }

    /// Whether the score depends on BM25 (else the search needs no scoring).
    pub fn reads_bm25(&self) -> bool {
        self.reads_bm25
    }

    /// The expression's value for one document; `None` is NULL.
    pub fn evaluate(&self, bm25: f64, values: &[Option<f64>]) -> Option<f64> {
        let values: Vec<f64> = values
            .iter()
            .map(|value| value.unwrap_or(f64::NAN))
            .collect();
        let value = self.program.evaluate(bm25, &values);
        (!value.is_nan()).then_some(value)
    }

    /// `evaluate` for the collector's inner loop: inputs and result with NaN for NULL.
    #[inline]
    pub fn evaluate_flat(&self, bm25: f64, values: &[f64]) -> f64 {
        self.program.evaluate(bm25, values)
    }

    /// The reference `evaluate`: the tree walked, as the program must give.
    #[cfg(test)]
    pub(super) fn evaluate_tree(&self, bm25: f64, values: &[Option<f64>]) -> Option<f64> {
        evaluate(&self.root, bm25, values)
    }

    /// The highest value the expression can take for a document whose BM25 score is at most
    /// `bm25_max` (and at least 0) and whose fields lie in `ranges` (aligned with `inputs`);
    /// minus infinity when every such document's score is NULL. Sound, not tight: evaluated at
    /// the ranges' ends, which float rounding (monotone) cannot push past a real value.
    pub fn upper_bound(&self, bm25_max: f64, ranges: &[ValueRange]) -> f64 {
        let bm25 = Interval {
            range: Some((0.0, bm25_max)),
            null: false,
        };
        let interval = bound(&self.root, bm25, ranges);
        match interval.range {
            Some((_, high)) if !high.is_nan() => high,
            Some(_) => f64::INFINITY,
            None => f64::NEG_INFINITY,
        }
    }
}

#[cfg(test)]
fn evaluate(node: &Node, bm25: f64, values: &[Option<f64>]) -> Option<f64> {
    let finite = |value: f64| value.is_finite().then_some(value);
    match node {
        Node::Bm25 => Some(bm25),
        Node::Input(slot) => values[*slot],
        Node::Literal(value) => Some(*value),
        Node::Negate(inner) => evaluate(inner, bm25, values).map(|value| -value),
        Node::Binary(operator, left, right) => {
            let left = evaluate(left, bm25, values)?;
            let right = evaluate(right, bm25, values)?;
            match operator {
                Operator::Add => finite(left + right),
                Operator::Sub => finite(left - right),
                Operator::Mul => finite(left * right),
                Operator::Div if right == 0.0 => None,
                Operator::Div => finite(left / right),
            }
        }
        Node::Call(function, arguments) => {
            let mut values_of = arguments
                .iter()
                .map(|argument| evaluate(argument, bm25, values));
            match function {
                Function::Coalesce => values_of.find_map(|value| value),
                Function::Ln | Function::Log10 | Function::Sqrt => {
                    let value = values_of.next()??;
                    match function {
                        Function::Ln if value > 0.0 => Some(value.ln()),
                        Function::Log10 if value > 0.0 => Some(value.log10()),
                        Function::Sqrt if value >= 0.0 => Some(value.sqrt()),
                        _ => None,
                    }
                }
                Function::Min | Function::Max => {
                    let mut best: Option<f64> = None;
                    for value in values_of {
                        let value = value?;
                        best = Some(match best {
                            None => value,
                            Some(best) if *function == Function::Min => best.min(value),
                            Some(best) => best.max(value),
                        });
                    }
                    best
                }
            }
        }
    }
}

/// The values an expression can take: `range` is `None` when it is always NULL; `null` when it
/// can be NULL.
#[derive(Debug, Clone, Copy)]
struct Interval {
    range: Option<(f64, f64)>,
    null: bool,
}

const UNBOUNDED: (f64, f64) = (f64::NEG_INFINITY, f64::INFINITY);

fn bound(node: &Node, bm25: Interval, ranges: &[ValueRange]) -> Interval {
    let of = |node: &Node| bound(node, bm25, ranges);
    match node {
        Node::Bm25 => bm25,
        Node::Input(slot) => Interval {
            range: ranges[*slot].values,
            null: ranges[*slot].may_be_missing,
        },
        Node::Literal(value) => Interval {
            range: Some((*value, *value)),
            null: false,
        },
        Node::Negate(inner) => {
            let inner = of(inner);
            Interval {
                range: inner.range.map(|(low, high)| (-high, -low)),
                null: inner.null,
            }
        }
        Node::Binary(operator, left, right) => {
            let (left, right) = (of(left), of(right));
            let mut null = left.null || right.null;
            let range = match (left.range, right.range) {
                (Some(a), Some(b)) => Some(match operator {
                    Operator::Add => (a.0 + b.0, a.1 + b.1),
                    Operator::Sub => (a.0 - b.1, a.1 - b.0),
                    Operator::Mul => hull([a.0 * b.0, a.0 * b.1, a.1 * b.0, a.1 * b.1]),
                    Operator::Div => {
                        if b.0 <= 0.0 && b.1 >= 0.0 {
                            null = true;
                            UNBOUNDED
                        } else {
                            hull([a.0 / b.0, a.0 / b.1, a.1 / b.0, a.1 / b.1])
                        }
                    }
                }),
                _ => None,
            };
            Interval { range, null }
        }
        Node::Call(function, arguments) => {
            let intervals: Vec<Interval> = arguments.iter().map(of).collect();
            match function {
                Function::Coalesce => {
                    let mut range: Option<(f64, f64)> = None;
                    let mut null = true;
                    for interval in intervals {
                        if let Some((low, high)) = interval.range {
                            range = Some(match range {
                                None => (low, high),
                                Some(known) => (known.0.min(low), known.1.max(high)),
                            });
                        }
                        if !interval.null {
                            null = false;
                            break;
                        }
                    }
                    Interval { range, null }
                }
                Function::Ln | Function::Log10 | Function::Sqrt => {
                    let Interval { range, mut null } = intervals[0];
                    let apply = |value: f64| match function {
                        Function::Ln => value.ln(),
                        Function::Log10 => value.log10(),
                        _ => value.sqrt(),
                    };
                    let domain_low = if *function == Function::Sqrt {
                        0.0
                    } else {
                        f64::MIN_POSITIVE
                    };
                    let range = range.and_then(|(low, high)| {
                        if low < domain_low {
                            null = true;
                        }
                        (high >= domain_low).then(|| (apply(low.max(domain_low)), apply(high)))
                    });
                    Interval { range, null }
                }
                Function::Min | Function::Max => {
                    let null = intervals.iter().any(|interval| interval.null);
                    let mut range = intervals[0].range;
                    for interval in &intervals[1..] {
                        range = match (range, interval.range) {
                            (Some(a), Some(b)) if *function == Function::Min => {
                                Some((a.0.min(b.0), a.1.min(b.1)))
                            }
                            (Some(a), Some(b)) => Some((a.0.max(b.0), a.1.max(b.1))),
                            _ => None,
                        };
                    }
                    Interval { range, null }
                }
            }
        }
    }
}

/// The smallest range holding every value; unbounded if one is NaN (`0 * inf`).
fn hull(values: [f64; 4]) -> (f64, f64) {
    if values.iter().any(|value| value.is_nan()) {
        return UNBOUNDED;
    }
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (low, high)
}

fn located(kind: RankingErrorKind, span: Span, message: impl Into<String>) -> Located {
    Located {
        kind,
        column: span.start.column,
        message: message.into(),
    }
}

pub(super) fn compile(text: &str, schema: &IndexSchema) -> Result<Expression, Located> {
    let expr = parse_expression(text).map_err(|err| Located {
        kind: RankingErrorKind::Syntax,
        column: err.column,
        message: err.message,
    })?;
    let mut compiler = Compiler {
        schema,
        inputs: Vec::new(),
        reads_bm25: false,
    };
    let root = compiler.node(&expr)?;
    Ok(Expression {
        program: Program::compile(&root),
        root,
        inputs: compiler.inputs,
        reads_bm25: compiler.reads_bm25,
    })
}

struct Compiler<'a> {
    schema: &'a IndexSchema,
    inputs: Vec<FieldInput>,
    reads_bm25: bool,
}

impl Compiler<'_> {
    fn node(&mut self, expr: &Expr) -> Result<Node, Located> {
        match expr {
            Expr::Nested(inner) => self.node(inner),
            Expr::Identifier(ident) => self.name(&ident.value, ident.span),
            Expr::CompoundIdentifier(parts) => {
                let name: Vec<&str> = parts.iter().map(|part| part.value.as_str()).collect();
                self.name(&name.join("."), expr.span())
            }
            Expr::Value(value) => match &value.value {
                Value::Number(number, _) => {
                    number.parse::<f64>().map(Node::Literal).map_err(|_| {
                        located(
                            RankingErrorKind::Syntax,
                            expr.span(),
                            format!("`{number}` is not a number"),
                        )
                    })
                }
                other => Err(located(
                    RankingErrorKind::TypeMismatch,
                    expr.span(),
                    format!("`{other}`: expressions compute with numbers only"),
                )),
            },
            Expr::UnaryOp { op, expr: inner } => match op {
                UnaryOperator::Minus => Ok(Node::Negate(Box::new(self.node(inner)?))),
                UnaryOperator::Plus => self.node(inner),
                other => Err(located(
                    RankingErrorKind::Unsupported,
                    expr.span(),
                    format!("operator `{other}` is not supported (use + - * /)"),
                )),
            },
            Expr::BinaryOp { left, op, right } => {
                let operator = match op {
                    BinaryOperator::Plus => Operator::Add,
                    BinaryOperator::Minus => Operator::Sub,
                    BinaryOperator::Multiply => Operator::Mul,
                    BinaryOperator::Divide => Operator::Div,
                    other => {
                        return Err(located(
                            RankingErrorKind::Unsupported,
                            left.span().union(&right.span()),
                            format!("operator `{other}` is not supported (use + - * /)"),
                        ));
                    }
                };
                Ok(Node::Binary(
                    operator,
                    Box::new(self.node(left)?),
                    Box::new(self.node(right)?),
                ))
            }
            Expr::Function(function) => {
                let name = function.name.to_string().to_ascii_lowercase();
                let (kind, arity) = match name.as_str() {
                    "ln" => (Function::Ln, 1..=1),
                    "log10" => (Function::Log10, 1..=1),
                    "sqrt" => (Function::Sqrt, 1..=1),
                    "min" => (Function::Min, 2..=usize::MAX),
                    "max" => (Function::Max, 2..=usize::MAX),
                    "coalesce" => (Function::Coalesce, 2..=usize::MAX),
                    _ => {
                        return Err(located(
                            RankingErrorKind::Unsupported,
                            expr.span(),
                            format!(
                                "unknown function `{name}` (known: ln, log10, sqrt, min, max, coalesce)"
                            ),
                        ));
                    }
                };
                let FunctionArguments::List(list) = &function.args else {
                    return Err(located(
                        RankingErrorKind::Syntax,
                        expr.span(),
                        format!("`{name}` takes its arguments in parentheses"),
                    ));
                };
                let mut arguments = Vec::with_capacity(list.args.len());
                for argument in &list.args {
                    match argument {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(argument)) => {
                            arguments.push(self.node(argument)?)
                        }
                        _ => {
                            return Err(located(
                                RankingErrorKind::Unsupported,
                                expr.span(),
                                format!("`{name}`: arguments must be plain expressions"),
                            ));
                        }
                    }
                }
                if list.duplicate_treatment.is_some()
                    || !list.clauses.is_empty()
                    || !arity.contains(&arguments.len())
                {
                    let wanted = if *arity.end() == 1 {
                        "one argument".to_string()
                    } else {
                        "two or more arguments".to_string()
                    };
                    return Err(located(
                        RankingErrorKind::Syntax,
                        expr.span(),
                        format!("`{name}` takes {wanted}, found {}", arguments.len()),
                    ));
                }
                Ok(Node::Call(kind, arguments))
            }
            other => Err(located(
                RankingErrorKind::Unsupported,
                other.span(),
                format!(
                    "`{other}` is not supported: use numbers, bm25, fast fields, + - * /, ln, log10, sqrt, min, max, coalesce"
                ),
            )),
        }
    }

    fn name(&mut self, name: &str, span: Span) -> Result<Node, Located> {
        if name.eq_ignore_ascii_case(BM25) {
            self.reads_bm25 = true;
            return Ok(Node::Bm25);
        }
        let (field, kind) = super::fast_value_field(self.schema, name)
            .map_err(|(kind, message)| located(kind, span, message))?;
        let slot = match self.inputs.iter().position(|input| input.field == field) {
            Some(slot) => slot,
            None => {
                self.inputs.push(FieldInput {
                    field,
                    name: name.to_string(),
                    kind,
                });
                self.inputs.len() - 1
            }
        };
        Ok(Node::Input(slot))
    }
}
