//! Math filters: numbers as JavaScript computes them.

use liquid_core::Result;
use liquid_core::model::Value;

use super::Invocation;
use super::js::{num, number};

/// `abs`: the absolute value.
pub(super) fn abs(c: &Invocation<'_>) -> Result<Value> {
    Ok(number(c.n().abs()))
}

/// `ceil`: rounded up.
pub(super) fn ceil(c: &Invocation<'_>) -> Result<Value> {
    Ok(number(c.n().ceil()))
}

/// `floor`: rounded down.
pub(super) fn floor(c: &Invocation<'_>) -> Result<Value> {
    Ok(number(c.n().floor()))
}

/// `at_least: n`: the larger of the two.
pub(super) fn at_least(c: &Invocation<'_>) -> Result<Value> {
    Ok(number(c.n().max(num(&c.arg(0)))))
}

/// `at_most: n`: the smaller of the two.
pub(super) fn at_most(c: &Invocation<'_>) -> Result<Value> {
    Ok(number(c.n().min(num(&c.arg(0)))))
}

/// `plus: n`.
pub(super) fn plus(c: &Invocation<'_>) -> Result<Value> {
    Ok(number(c.n() + num(&c.arg(0))))
}

/// `minus: n`.
pub(super) fn minus(c: &Invocation<'_>) -> Result<Value> {
    Ok(number(c.n() - num(&c.arg(0))))
}

/// `times: n`.
pub(super) fn times(c: &Invocation<'_>) -> Result<Value> {
    Ok(number(c.n() * num(&c.arg(0))))
}

/// `divided_by: n[, integer]`: JavaScript division, floored when the
/// second argument is truthy.
pub(super) fn divided_by(c: &Invocation<'_>) -> Result<Value> {
    let q = c.n() / num(&c.arg(0));
    Ok(number(if num(&c.arg(1)) != 0.0 { q.floor() } else { q }))
}

/// `modulo: n`: the remainder with the divisor's sign.
pub(super) fn modulo(c: &Invocation<'_>) -> Result<Value> {
    let d = num(&c.arg(0));
    Ok(number(((c.n() % d) + d) % d))
}

/// `round[: places]`: half away from zero, as LiquidJS rounds.
pub(super) fn round(c: &Invocation<'_>) -> Result<Value> {
    Ok(number(super::js::round(c.n(), num(&c.arg(0)))))
}
