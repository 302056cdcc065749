//! `Predicate` × record batch → boolean column, with arrow compute kernels. The only per-row
//! loop is the ANY reduction of list values back to their rows.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, Datum, Scalar};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::cmp;
use arrow::compute::{and_kleene, cast, ilike, is_null, like, not, or_kleene};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::compile::{CmpOp, Predicate, ValueTest};

/// OR of all predicates, with unknown (NULL) read as false.
pub(super) fn select_any(
    predicates: &[Predicate],
    batch: &RecordBatch,
) -> Result<BooleanArray, ArrowError> {
    let mut selected = BooleanArray::from(vec![false; batch.num_rows()]);
    for predicate in predicates {
        selected = or_kleene(&selected, &evaluate(predicate, batch)?)?;
    }
    Ok(null_as_false(&selected))
}

fn null_as_false(values: &BooleanArray) -> BooleanArray {
    match values.nulls() {
        Some(nulls) => BooleanArray::new(values.values() & nulls.inner(), None),
        None => values.clone(),
    }
}

pub(super) fn evaluate(
    predicate: &Predicate,
    batch: &RecordBatch,
) -> Result<BooleanArray, ArrowError> {
    match predicate {
        Predicate::Constant(value) => Ok(BooleanArray::from(vec![*value; batch.num_rows()])),
        Predicate::And(left, right) => {
            and_kleene(&evaluate(left, batch)?, &evaluate(right, batch)?)
        }
        Predicate::Or(left, right) => or_kleene(&evaluate(left, batch)?, &evaluate(right, batch)?),
        Predicate::Not(inner) => not(&evaluate(inner, batch)?),
        Predicate::IsNull { column } => is_null(batch.column(*column)),
        Predicate::IsTrue { column } => Ok(batch.column(*column).as_boolean().clone()),
        Predicate::Values {
            column,
            domain,
            test,
        } => {
            let values = batch.column(*column);
            match values.data_type() {
                DataType::List(_) => {
                    let list = values.as_list::<i32>();
                    let flat = test_values(list.values(), domain.as_ref(), test)?;
                    Ok(any_per_list(list.value_offsets(), list.nulls(), &flat))
                }
                _ => test_values(values, domain.as_ref(), test),
            }
        }
        Predicate::CompareColumns {
            left,
            op,
            right,
            domain,
        } => {
            let left = in_domain(batch.column(*left), domain.as_ref())?;
            let right = in_domain(batch.column(*right), domain.as_ref())?;
            compare(&left, *op, &right)
        }
    }
}

fn in_domain(values: &ArrayRef, domain: Option<&DataType>) -> Result<ArrayRef, ArrowError> {
    match domain {
        Some(data_type) if values.data_type() != data_type => cast(values, data_type),
        _ => Ok(values.clone()),
    }
}

fn test_values(
    values: &ArrayRef,
    domain: Option<&DataType>,
    test: &ValueTest,
) -> Result<BooleanArray, ArrowError> {
    let values = in_domain(values, domain)?;
    match test {
        ValueTest::Compare { op, literal } => compare(&values, *op, &Scalar::new(literal)),
        ValueTest::InList(literals) => {
            let mut matched = BooleanArray::from(vec![false; values.len()]);
            for literal in literals {
                matched = or_kleene(&matched, &cmp::eq(&values, &Scalar::new(literal))?)?;
            }
            Ok(matched)
        }
        ValueTest::Between { low, high } => and_kleene(
            &cmp::gt_eq(&values, &Scalar::new(low))?,
            &cmp::lt_eq(&values, &Scalar::new(high))?,
        ),
        ValueTest::Like {
            pattern,
            case_insensitive,
        } => {
            let pattern = Scalar::new(pattern);
            if *case_insensitive {
                ilike(&values, &pattern)
            } else {
                like(&values, &pattern)
            }
        }
    }
}

fn compare(left: &dyn Datum, op: CmpOp, right: &dyn Datum) -> Result<BooleanArray, ArrowError> {
    match op {
        CmpOp::Eq => cmp::eq(left, right),
        CmpOp::Lt => cmp::lt(left, right),
        CmpOp::LtEq => cmp::lt_eq(left, right),
        CmpOp::Gt => cmp::gt(left, right),
        CmpOp::GtEq => cmp::gt_eq(left, right),
    }
}

/// ANY over each list's values, in three-valued logic: true if some value is true, else NULL
/// if some value is NULL or the list itself is NULL, else false (an empty list is false).
fn any_per_list(
    offsets: &[i32],
    list_nulls: Option<&NullBuffer>,
    flat: &BooleanArray,
) -> BooleanArray {
    let rows = offsets.len() - 1;
    let mut values = BooleanBufferBuilder::new(rows);
    let mut valid = BooleanBufferBuilder::new(rows);
    for row in 0..rows {
        if list_nulls.is_some_and(|nulls| nulls.is_null(row)) {
            values.append(false);
            valid.append(false);
            continue;
        }
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        let mut any_true = false;
        let mut any_null = false;
        for index in start..end {
            if flat.is_null(index) {
                any_null = true;
            } else if flat.value(index) {
                any_true = true;
                break;
            }
        }
        values.append(any_true);
        valid.append(any_true || !any_null);
    }
    BooleanArray::new(values.finish(), Some(NullBuffer::new(valid.finish())))
}
