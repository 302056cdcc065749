//! A score expression as a flat program: its nodes in postfix order, run over a small value
//! stack, so that ranking a document is one pass over a slice instead of a recursive walk of
//! boxed nodes with an `Option` at every step.
//!
//! NULL is NaN: every operator but `coalesce`, `min` and `max` propagates NaN by itself, a
//! result that leaves the finite numbers becomes NULL as the tree's evaluation makes it, and
//! `coalesce`, `min`, `max` and the domain checks of `ln`, `log10` and `sqrt` test for it. The
//! program gives bit for bit what `expression::evaluate` gives (`tests.rs` checks it on random
//! expressions).

use super::expression::{Function, Node, Operator};

/// Programs this deep or shallower run on a stack array; deeper ones (rare: one level per
/// pending operand) on a heap buffer.
const INLINE_STACK: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Bm25,
    /// Index into the input values.
    Input(u32),
    Literal(f64),
    Negate,
    Add,
    Sub,
    Mul,
    Div,
    Ln,
    Log10,
    Sqrt,
    /// The first of the top `n` values that is not NULL.
    Coalesce(u32),
    /// Of the top `n` values; NULL if one is.
    Min(u32),
    Max(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    ops: Vec<Op>,
    /// The most values on the stack at once.
    depth: usize,
}

impl Program {
    pub(super) fn compile(root: &Node) -> Program {
        let mut program = Program {
            ops: Vec::new(),
            depth: 0,
        };
        let mut height = 0;
        program.emit(root, &mut height);
        program
    }

    fn push(&mut self, op: Op, height: &mut usize, pops: usize) {
        *height = *height - pops + 1;
        self.depth = self.depth.max(*height);
        self.ops.push(op);
    }

    fn emit(&mut self, node: &Node, height: &mut usize) {
        match node {
            Node::Bm25 => self.push(Op::Bm25, height, 0),
            Node::Input(slot) => self.push(Op::Input(*slot as u32), height, 0),
            Node::Literal(value) => self.push(Op::Literal(*value), height, 0),
            Node::Negate(inner) => {
                self.emit(inner, height);
                self.push(Op::Negate, height, 1);
            }
            Node::Binary(operator, left, right) => {
                self.emit(left, height);
                self.emit(right, height);
                let op = match operator {
                    Operator::Add => Op::Add,
                    Operator::Sub => Op::Sub,
                    Operator::Mul => Op::Mul,
                    Operator::Div => Op::Div,
                };
                self.push(op, height, 2);
            }
            Node::Call(function, arguments) => {
                for argument in arguments {
                    self.emit(argument, height);
                }
                let count = arguments.len();
                let op = match function {
                    Function::Ln => Op::Ln,
                    Function::Log10 => Op::Log10,
                    Function::Sqrt => Op::Sqrt,
                    Function::Coalesce => Op::Coalesce(count as u32),
                    Function::Min => Op::Min(count as u32),
                    Function::Max => Op::Max(count as u32),
                };
                self.push(op, height, count);
            }
        }
    }

    /// The expression's value for a document with this BM25 score and these input values
    /// (NaN for a missing one); NaN is NULL.
    #[inline]
    pub fn evaluate(&self, bm25: f64, values: &[f64]) -> f64 {
        if self.depth <= INLINE_STACK {
            let mut stack = [0.0; INLINE_STACK];
            self.run(bm25, values, &mut stack)
        } else {
            let mut stack = vec![0.0; self.depth];
            self.run(bm25, values, &mut stack)
        }
    }

    #[inline]
    fn run(&self, bm25: f64, values: &[f64], stack: &mut [f64]) -> f64 {
        // Finite or NULL, as every arithmetic result of the tree's evaluation is.
        fn finite(value: f64) -> f64 {
            if value.is_finite() { value } else { f64::NAN }
        }
        let mut top = 0usize;
        for op in &self.ops {
            match *op {
                Op::Bm25 => {
                    stack[top] = bm25;
                    top += 1;
                }
                Op::Input(slot) => {
                    stack[top] = values[slot as usize];
                    top += 1;
                }
                Op::Literal(value) => {
                    stack[top] = value;
                    top += 1;
                }
                Op::Negate => stack[top - 1] = -stack[top - 1],
                Op::Add | Op::Sub | Op::Mul | Op::Div => {
                    let (left, right) = (stack[top - 2], stack[top - 1]);
                    top -= 1;
                    stack[top - 1] = match *op {
                        Op::Add => finite(left + right),
                        Op::Sub => finite(left - right),
                        Op::Mul => finite(left * right),
                        // NULL propagates before the division by zero is seen, as in the tree.
                        _ if left.is_nan() || right.is_nan() || right == 0.0 => f64::NAN,
                        _ => finite(left / right),
                    };
                }
                Op::Ln | Op::Log10 | Op::Sqrt => {
                    let value = stack[top - 1];
                    stack[top - 1] = match *op {
                        Op::Ln if value > 0.0 => value.ln(),
                        Op::Log10 if value > 0.0 => value.log10(),
                        Op::Sqrt if value >= 0.0 => value.sqrt(),
                        _ => f64::NAN,
                    };
                }
                Op::Coalesce(count) => {
                    let first = top - count as usize;
                    stack[first] = stack[first..top]
                        .iter()
                        .copied()
                        .find(|value| !value.is_nan())
                        .unwrap_or(f64::NAN);
                    top = first + 1;
                }
                Op::Min(count) | Op::Max(count) => {
                    let first = top - count as usize;
                    let arguments = &stack[first..top];
                    stack[first] = if arguments.iter().any(|value| value.is_nan()) {
                        f64::NAN
                    } else if matches!(op, Op::Min(_)) {
                        arguments.iter().copied().fold(f64::INFINITY, f64::min)
                    } else {
                        arguments.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                    };
                    top = first + 1;
                }
            }
        }
        stack[0]
    }
}
