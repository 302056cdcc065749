//! sqlparser AST → `Predicate`, checked against the schema. Every error carries the column in
//! the expression where the offending token starts.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    UInt64Array,
};
use arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use arrow::datatypes::DataType;
use sqlparser::ast::{BinaryOperator, Expr, Ident, Spanned, UnaryOperator, Value};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Span, Token};

use super::RulesErrorKind;
use crate::schema::{FieldType, IndexSchema};

/// A boolean expression over one record batch, evaluated by `eval`.
#[derive(Debug, Clone)]
pub enum Predicate {
    Constant(Option<bool>),
    And(Box<Predicate>, Box<Predicate>),
    Or(Box<Predicate>, Box<Predicate>),
    Not(Box<Predicate>),
    IsNull {
        column: usize,
    },
    /// A bare boolean field used as a condition.
    IsTrue {
        column: usize,
    },
    /// A test on a field's values: on the column itself, or with ANY semantics on the values
    /// of a list column. `domain` is the type both sides are cast to before comparing (set
    /// when a literal does not fit the column's own type, e.g. `u64_field > 1.5`).
    Values {
        column: usize,
        domain: Option<DataType>,
        test: ValueTest,
    },
    CompareColumns {
        left: usize,
        op: CmpOp,
        right: usize,
        domain: Option<DataType>,
    },
}

impl Predicate {
    /// The input columns the predicate reads.
    pub fn columns(&self) -> std::collections::BTreeSet<usize> {
        let mut columns = std::collections::BTreeSet::new();
        self.collect_columns(&mut columns);
        columns
    }

    fn collect_columns(&self, columns: &mut std::collections::BTreeSet<usize>) {
        match self {
            Predicate::Constant(_) => {}
            Predicate::And(left, right) | Predicate::Or(left, right) => {
                left.collect_columns(columns);
                right.collect_columns(columns);
            }
            Predicate::Not(inner) => inner.collect_columns(columns),
            Predicate::IsNull { column }
            | Predicate::IsTrue { column }
            | Predicate::Values { column, .. } => {
                columns.insert(*column);
            }
            Predicate::CompareColumns { left, right, .. } => {
                columns.insert(*left);
                columns.insert(*right);
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum ValueTest {
    Compare {
        op: CmpOp,
        literal: ArrayRef,
    },
    InList(Vec<ArrayRef>),
    Between {
        low: ArrayRef,
        high: ArrayRef,
    },
    Like {
        pattern: ArrayRef,
        case_insensitive: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CmpOp {
    /// The operator seen from the other side: `1 < x` is `x > 1`.
    fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::LtEq => CmpOp::GtEq,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::GtEq => CmpOp::LtEq,
        }
    }
}

/// A compile error located within the expression; `RulesError` adds the file and entry.
#[derive(Debug)]
pub struct Located {
    pub kind: RulesErrorKind,
    pub column: u64,
    pub message: String,
}

fn located(kind: RulesErrorKind, span: Span, message: impl Into<String>) -> Located {
    Located {
        kind,
        column: span.start.column,
        message: message.into(),
    }
}

pub fn compile(expression: &str, schema: &IndexSchema) -> Result<Predicate, Located> {
    let expr = parse_expression(expression).map_err(|err| Located {
        kind: RulesErrorKind::Syntax,
        column: err.column,
        message: err.message,
    })?;
    Compiler { schema }.predicate(&expr)
}

/// A syntax error in an SQL expression: the 1-based column where it was found (0 when
/// sqlparser does not say) and the message, starting "syntax error".
#[derive(Debug)]
pub struct SqlSyntaxError {
    pub column: u64,
    pub message: String,
}

/// Parses `text` as one SQL expression, all of it. Shared by the rules and the rank profiles.
pub fn parse_expression(text: &str) -> Result<Expr, SqlSyntaxError> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(syntax_error)?;
    let expr = parser.parse_expr().map_err(|err| {
        let mut error = syntax_error(err);
        if error.column == 0 && error.message.ends_with("found: EOF") {
            // The expression ended too early: point just past its end.
            error.column = text.chars().count() as u64 + 1;
        }
        error
    })?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(SqlSyntaxError {
            column: next.span.start.column,
            message: format!(
                "syntax error: unexpected `{}` after the expression",
                next.token
            ),
        });
    }
    Ok(expr)
}

/// sqlparser reports positions only inside its message ("... at Line: 1, Column: 7").
fn syntax_error(err: ParserError) -> SqlSyntaxError {
    let message = match &err {
        ParserError::TokenizerError(message) | ParserError::ParserError(message) => message.clone(),
        other => other.to_string(),
    };
    let column = message
        .rsplit_once("Column: ")
        .and_then(|(_, tail)| {
            let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0);
    let message = match message.find(" at Line: ") {
        Some(at) => message[..at].to_string(),
        None => message,
    };
    SqlSyntaxError {
        column,
        message: format!("syntax error: {message}"),
    }
}

/// A literal as written, before it is given the type of the field it meets.
enum RawLiteral {
    Number(String),
    Str(String),
    Bool(bool),
    Null,
}

impl RawLiteral {
    fn describe(&self) -> String {
        match self {
            RawLiteral::Number(text) => format!("number {text}"),
            RawLiteral::Str(text) => format!("string '{text}'"),
            RawLiteral::Bool(value) => format!("boolean {value}"),
            RawLiteral::Null => "NULL".into(),
        }
    }
}

fn raw_literal(expr: &Expr) -> Option<RawLiteral> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(text, _) => Some(RawLiteral::Number(text.clone())),
            Value::SingleQuotedString(text) => Some(RawLiteral::Str(text.clone())),
            Value::Boolean(value) => Some(RawLiteral::Bool(*value)),
            Value::Null => Some(RawLiteral::Null),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match raw_literal(expr)? {
            RawLiteral::Number(text) => Some(RawLiteral::Number(format!("-{text}"))),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => match raw_literal(expr)? {
            RawLiteral::Number(text) => Some(RawLiteral::Number(text)),
            _ => None,
        },
        Expr::Nested(inner) => raw_literal(inner),
        _ => None,
    }
}

struct Compiler<'a> {
    schema: &'a IndexSchema,
}

impl Compiler<'_> {
    fn predicate(&self, expr: &Expr) -> Result<Predicate, Located> {
        match expr {
            Expr::Nested(inner) => self.predicate(inner),
            Expr::Value(value) => match &value.value {
                Value::Boolean(value) => Ok(Predicate::Constant(Some(*value))),
                Value::Null => Ok(Predicate::Constant(None)),
                _ => Err(located(
                    RulesErrorKind::TypeMismatch,
                    expr.span(),
                    format!("`{expr}` is not a boolean expression"),
                )),
            },
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                let (column, field_type, span) = self.field(expr)?;
                if field_type != FieldType::Bool {
                    return Err(located(
                        RulesErrorKind::TypeMismatch,
                        span,
                        format!(
                            "field `{}` is {}, not bool: compare it with something",
                            self.name(column),
                            field_type.name()
                        ),
                    ));
                }
                Ok(Predicate::IsTrue { column })
            }
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => Ok(Predicate::Not(Box::new(self.predicate(expr)?))),
            Expr::BinaryOp { left, op, right } => match op {
                BinaryOperator::And => Ok(Predicate::And(
                    Box::new(self.predicate(left)?),
                    Box::new(self.predicate(right)?),
                )),
                BinaryOperator::Or => Ok(Predicate::Or(
                    Box::new(self.predicate(left)?),
                    Box::new(self.predicate(right)?),
                )),
                BinaryOperator::Eq => self.comparison(left, CmpOp::Eq, right, false),
                BinaryOperator::NotEq => self.comparison(left, CmpOp::Eq, right, true),
                BinaryOperator::Lt => self.comparison(left, CmpOp::Lt, right, false),
                BinaryOperator::LtEq => self.comparison(left, CmpOp::LtEq, right, false),
                BinaryOperator::Gt => self.comparison(left, CmpOp::Gt, right, false),
                BinaryOperator::GtEq => self.comparison(left, CmpOp::GtEq, right, false),
                other => Err(located(
                    RulesErrorKind::Unsupported,
                    expr.span(),
                    format!("operator `{other}` is not supported in rules"),
                )),
            },
            Expr::IsNull(inner) => Ok(Predicate::IsNull {
                column: self.field(inner)?.0,
            }),
            Expr::IsNotNull(inner) => Ok(Predicate::Not(Box::new(Predicate::IsNull {
                column: self.field(inner)?.0,
            }))),
            Expr::InList {
                expr: target,
                list,
                negated,
            } => {
                let (column, field_type, _) = self.field(target)?;
                let raws = list
                    .iter()
                    .map(|item| self.literal_of(item))
                    .collect::<Result<Vec<_>, _>>()?;
                let (domain, mut arrays) = self.typed_literals(column, field_type, &raws)?;
                let test = ValueTest::InList(std::mem::take(&mut arrays));
                Ok(negate_if(
                    *negated,
                    Predicate::Values {
                        column,
                        domain,
                        test,
                    },
                ))
            }
            Expr::Between {
                expr: target,
                negated,
                low,
                high,
            } => {
                let (column, field_type, _) = self.field(target)?;
                let raws = vec![self.literal_of(low)?, self.literal_of(high)?];
                let (domain, mut arrays) = self.typed_literals(column, field_type, &raws)?;
                let high = arrays.pop().expect("two literals");
                let low = arrays.pop().expect("two literals");
                Ok(negate_if(
                    *negated,
                    Predicate::Values {
                        column,
                        domain,
                        test: ValueTest::Between { low, high },
                    },
                ))
            }
            Expr::Like {
                negated,
                any,
                expr: target,
                pattern,
                escape_char,
            }
            | Expr::ILike {
                negated,
                any,
                expr: target,
                pattern,
                escape_char,
            } => {
                let case_insensitive = matches!(expr, Expr::ILike { .. });
                if *any || escape_char.is_some() {
                    return Err(located(
                        RulesErrorKind::Unsupported,
                        expr.span(),
                        "LIKE ANY and LIKE ... ESCAPE are not supported",
                    ));
                }
                let (column, field_type, span) = self.field(target)?;
                if !field_type.is_string() {
                    return Err(located(
                        RulesErrorKind::TypeMismatch,
                        span,
                        format!(
                            "LIKE needs a text or keyword field; `{}` is {}",
                            self.name(column),
                            field_type.name()
                        ),
                    ));
                }
                let (raw, raw_span) = self.literal_of(pattern)?;
                let RawLiteral::Str(pattern) = raw else {
                    return Err(located(
                        RulesErrorKind::TypeMismatch,
                        raw_span,
                        format!("LIKE needs a string pattern, not {}", raw.describe()),
                    ));
                };
                Ok(negate_if(
                    *negated,
                    Predicate::Values {
                        column,
                        domain: None,
                        test: ValueTest::Like {
                            pattern: Arc::new(StringArray::from(vec![pattern])),
                            case_insensitive,
                        },
                    },
                ))
            }
            other => Err(located(
                RulesErrorKind::Unsupported,
                other.span(),
                format!(
                    "`{other}` is not supported in rules (use comparisons, IN, BETWEEN, \
                     IS [NOT] NULL, LIKE, AND, OR, NOT)"
                ),
            )),
        }
    }

    fn comparison(
        &self,
        left: &Expr,
        op: CmpOp,
        right: &Expr,
        negated: bool,
    ) -> Result<Predicate, Located> {
        let left_is_field = matches!(left, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
        let right_is_field = matches!(right, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
        let predicate = match (left_is_field, right_is_field) {
            (true, true) => self.column_comparison(left, op, right)?,
            (true, false) => self.literal_comparison(left, op, right)?,
            (false, true) => self.literal_comparison(right, op.flipped(), left)?,
            (false, false) => {
                return Err(located(
                    RulesErrorKind::Unsupported,
                    left.span(),
                    "a comparison needs a field on at least one side",
                ));
            }
        };
        Ok(negate_if(negated, predicate))
    }

    fn literal_comparison(
        &self,
        field_expr: &Expr,
        op: CmpOp,
        literal_expr: &Expr,
    ) -> Result<Predicate, Located> {
        let (column, field_type, _) = self.field(field_expr)?;
        let raw = self.literal_of(literal_expr)?;
        let (domain, mut arrays) = self.typed_literals(column, field_type, &[raw])?;
        Ok(Predicate::Values {
            column,
            domain,
            test: ValueTest::Compare {
                op,
                literal: arrays.pop().expect("one literal"),
            },
        })
    }

    fn column_comparison(
        &self,
        left: &Expr,
        op: CmpOp,
        right: &Expr,
    ) -> Result<Predicate, Located> {
        let (left_column, left_type, left_span) = self.field(left)?;
        let (right_column, right_type, _) = self.field(right)?;
        let multi = |column: usize| {
            matches!(
                self.schema.input_arrow.field(column).data_type(),
                DataType::List(_)
            )
        };
        if multi(left_column) || multi(right_column) {
            return Err(located(
                RulesErrorKind::Unsupported,
                left_span,
                "comparing two fields is supported only for single-valued fields",
            ));
        }
        let domain = if left_type == right_type {
            None
        } else if left_type.is_numeric() && right_type.is_numeric() {
            Some(DataType::Float64)
        } else if left_type.is_string() && right_type.is_string() {
            None
        } else {
            return Err(located(
                RulesErrorKind::TypeMismatch,
                left_span,
                format!(
                    "cannot compare `{}` ({}) with `{}` ({})",
                    self.name(left_column),
                    left_type.name(),
                    self.name(right_column),
                    right_type.name()
                ),
            ));
        };
        Ok(Predicate::CompareColumns {
            left: left_column,
            op,
            right: right_column,
            domain,
        })
    }

    fn name(&self, column: usize) -> &str {
        &self.schema.spec.fields[column].name
    }

    fn field(&self, expr: &Expr) -> Result<(usize, FieldType, Span), Located> {
        let ident: &Ident = match expr {
            Expr::Identifier(ident) => ident,
            Expr::Nested(inner) => return self.field(inner),
            Expr::CompoundIdentifier(parts) => {
                return Err(located(
                    RulesErrorKind::UnknownField,
                    expr.span(),
                    format!(
                        "unknown field `{}`: fields are plain names, without a qualifier",
                        parts
                            .iter()
                            .map(|part| part.value.as_str())
                            .collect::<Vec<_>>()
                            .join(".")
                    ),
                ));
            }
            other => {
                return Err(located(
                    RulesErrorKind::Unsupported,
                    other.span(),
                    format!("expected a field name, found `{other}`"),
                ));
            }
        };
        let fields = &self.schema.spec.fields;
        let exact = fields.iter().position(|field| field.name == ident.value);
        // Unquoted SQL identifiers are case-insensitive; quoted ones are exact.
        let column = exact.or_else(|| {
            if ident.quote_style.is_some() {
                return None;
            }
            let mut matches = fields
                .iter()
                .enumerate()
                .filter(|(_, field)| field.name.eq_ignore_ascii_case(&ident.value));
            match (matches.next(), matches.next()) {
                (Some((index, _)), None) => Some(index),
                _ => None,
            }
        });
        match column {
            Some(column) => Ok((column, fields[column].field_type, ident.span)),
            None => Err(located(
                RulesErrorKind::UnknownField,
                ident.span,
                format!(
                    "unknown field `{}` (schema fields: {})",
                    ident.value,
                    fields
                        .iter()
                        .map(|field| field.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    fn literal_of(&self, expr: &Expr) -> Result<(RawLiteral, Span), Located> {
        match raw_literal(expr) {
            Some(raw) => Ok((raw, expr.span())),
            None => Err(located(
                RulesErrorKind::Unsupported,
                expr.span(),
                format!("expected a literal (number, 'string', true, false), found `{expr}`"),
            )),
        }
    }

    /// Gives literals the type of the field they are compared with, choosing one comparison
    /// domain for all of them.
    fn typed_literals(
        &self,
        column: usize,
        field_type: FieldType,
        raws: &[(RawLiteral, Span)],
    ) -> Result<(Option<DataType>, Vec<ArrayRef>), Located> {
        let mismatch = |raw: &RawLiteral, span: Span| {
            located(
                RulesErrorKind::TypeMismatch,
                span,
                format!(
                    "type mismatch: field `{}` is {}, compared with {}",
                    self.name(column),
                    field_type.name(),
                    raw.describe()
                ),
            )
        };
        for (raw, span) in raws {
            if let RawLiteral::Null = raw {
                return Err(located(
                    RulesErrorKind::TypeMismatch,
                    *span,
                    "comparing with NULL is never true: use IS NULL or IS NOT NULL",
                ));
            }
        }
        match field_type {
            FieldType::Text | FieldType::Keyword => raws
                .iter()
                .map(|(raw, span)| match raw {
                    RawLiteral::Str(text) => {
                        Ok(Arc::new(StringArray::from(vec![text.as_str()])) as ArrayRef)
                    }
                    other => Err(mismatch(other, *span)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|arrays| (None, arrays)),
            FieldType::Bool => raws
                .iter()
                .map(|(raw, span)| match raw {
                    RawLiteral::Bool(value) => {
                        Ok(Arc::new(BooleanArray::from(vec![*value])) as ArrayRef)
                    }
                    other => Err(mismatch(other, *span)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|arrays| (None, arrays)),
            FieldType::Date => raws
                .iter()
                .map(|(raw, span)| match raw {
                    RawLiteral::Str(text) => {
                        let nanos = string_to_timestamp_nanos(text).map_err(|_| {
                            located(
                                RulesErrorKind::TypeMismatch,
                                *span,
                                format!(
                                    "'{text}' is not a date or timestamp \
                                     (e.g. '2024-01-31' or '2024-01-31T12:00:00Z')"
                                ),
                            )
                        })?;
                        Ok(Arc::new(
                            TimestampMicrosecondArray::from(vec![nanos.div_euclid(1000)])
                                .with_timezone("UTC"),
                        ) as ArrayRef)
                    }
                    other => Err(mismatch(other, *span)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|arrays| (None, arrays)),
            FieldType::I64 | FieldType::U64 | FieldType::F64 => {
                let mut texts = Vec::with_capacity(raws.len());
                for (raw, span) in raws {
                    match raw {
                        RawLiteral::Number(text) => texts.push((text.as_str(), *span)),
                        other => return Err(mismatch(other, *span)),
                    }
                }
                let all_native = texts.iter().all(|(text, _)| match field_type {
                    FieldType::I64 => text.parse::<i64>().is_ok(),
                    FieldType::U64 => text.parse::<u64>().is_ok(),
                    _ => text.parse::<f64>().is_ok(),
                });
                if all_native {
                    let arrays = texts
                        .iter()
                        .map(|(text, _)| match field_type {
                            FieldType::I64 => Arc::new(Int64Array::from(vec![
                                text.parse::<i64>().expect("checked"),
                            ])) as ArrayRef,
                            FieldType::U64 => Arc::new(UInt64Array::from(vec![
                                text.parse::<u64>().expect("checked"),
                            ])),
                            _ => Arc::new(Float64Array::from(vec![
                                text.parse::<f64>().expect("checked"),
                            ])),
                        })
                        .collect();
                    return Ok((None, arrays));
                }
                // A literal outside the field's own type (1.5 or -1 against u64): compare both
                // sides as f64.
                let arrays = texts
                    .iter()
                    .map(|(text, span)| {
                        text.parse::<f64>()
                            .map(|value| Arc::new(Float64Array::from(vec![value])) as ArrayRef)
                            .map_err(|_| {
                                located(
                                    RulesErrorKind::TypeMismatch,
                                    *span,
                                    format!("`{text}` is not a number"),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((Some(DataType::Float64), arrays))
            }
        }
    }
}

fn negate_if(negated: bool, predicate: Predicate) -> Predicate {
    if negated {
        Predicate::Not(Box::new(predicate))
    } else {
        predicate
    }
}
