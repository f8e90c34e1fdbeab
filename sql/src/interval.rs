use std::time::Duration;

use datafusion::sql::sqlparser::ast::{self, DateTimeField, Expr, Value};

use crate::{Error, Result};

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Parses a duration option such as `10s`, `5 minutes` or `250ms`.
pub fn parse_duration_option(key: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        Error::invalid(format!(
            "invalid value '{value}' for option '{key}': expected a duration such as '10s' or '5 minutes' ({e})"
        ))
    })
}

/// Formats a nanosecond duration the way users write it (`5s`, `1m`, `250ms`).
pub fn format_duration(nanos: i64) -> String {
    humantime::format_duration(Duration::from_nanos(nanos.max(0) as u64)).to_string()
}

/// The length in nanoseconds of a fixed-length interval expression such as
/// `INTERVAL '1' MINUTE`, `INTERVAL '10 seconds'` or `INTERVAL '1.5' SECOND`.
/// Months and years have no fixed length and are rejected.
pub(crate) fn interval_nanos(expr: &Expr) -> Result<i64> {
    let invalid = |why: &str| Error::invalid(format!("invalid interval {expr}: {why}"));
    let Expr::Interval(ast::Interval {
        value,
        leading_field,
        last_field,
        ..
    }) = expr
    else {
        return Err(invalid(
            "expected INTERVAL '<n>' <unit>, e.g. INTERVAL '1' MINUTE",
        ));
    };
    if last_field.is_some() {
        return Err(invalid(
            "interval ranges (e.g. HOUR TO SECOND) are not supported",
        ));
    }
    let text = match value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
            _ => return Err(invalid("the value must be a quoted number")),
        },
        _ => return Err(invalid("the value must be a quoted number")),
    };
    let mut parts = text.split_whitespace();
    let number = parts.next().ok_or_else(|| invalid("the value is empty"))?;
    let unit_word = parts.next();
    if parts.next().is_some() {
        return Err(invalid("write one number and one unit, e.g. '10 seconds'"));
    }
    let unit = match (leading_field, unit_word) {
        (Some(_), Some(_)) => return Err(invalid("the unit is given twice")),
        (Some(field), None) => field_nanos(field).ok_or_else(|| {
            invalid("months and years have no fixed length; use days or smaller units")
        })?,
        (None, Some(word)) => word_nanos(word)
            .ok_or_else(|| invalid("unknown unit; use millisecond, second, minute, hour or day"))?,
        (None, None) => return Err(invalid("missing unit, e.g. INTERVAL '1' MINUTE")),
    };
    let nanos = parse_scaled(number, unit).ok_or_else(|| invalid("not a number"))?;
    if nanos <= 0 {
        return Err(invalid("must be positive"));
    }
    i64::try_from(nanos).map_err(|_| invalid("too large"))
}

fn field_nanos(field: &DateTimeField) -> Option<i128> {
    Some(match field {
        DateTimeField::Millisecond | DateTimeField::Milliseconds => 1_000_000,
        DateTimeField::Microsecond | DateTimeField::Microseconds => 1_000,
        DateTimeField::Second | DateTimeField::Seconds => NANOS_PER_SECOND,
        DateTimeField::Minute | DateTimeField::Minutes => 60 * NANOS_PER_SECOND,
        DateTimeField::Hour | DateTimeField::Hours => 3_600 * NANOS_PER_SECOND,
        DateTimeField::Day | DateTimeField::Days => 86_400 * NANOS_PER_SECOND,
        DateTimeField::Week(_) | DateTimeField::Weeks => 7 * 86_400 * NANOS_PER_SECOND,
        _ => return None,
    })
}

fn word_nanos(word: &str) -> Option<i128> {
    Some(match word.to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1_000_000,
        "us" | "microsecond" | "microseconds" => 1_000,
        "s" | "sec" | "secs" | "second" | "seconds" => NANOS_PER_SECOND,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * NANOS_PER_SECOND,
        "h" | "hour" | "hours" => 3_600 * NANOS_PER_SECOND,
        "d" | "day" | "days" => 86_400 * NANOS_PER_SECOND,
        "week" | "weeks" => 7 * 86_400 * NANOS_PER_SECOND,
        _ => return None,
    })
}

/// `number × unit` without floating-point rounding: `1.5` seconds is exactly
/// 1_500_000_000 ns.
fn parse_scaled(number: &str, unit: i128) -> Option<i128> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole.checked_mul(unit)?;
    let mut scale = unit;
    for digit in frac.chars() {
        let d = i128::from(digit.to_digit(10)?);
        scale /= 10;
        value = value.checked_add(d * scale)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::{dialect::GenericDialect, parser::Parser};

    fn nanos(sql: &str) -> Result<i64> {
        let expr = Parser::new(&GenericDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap();
        interval_nanos(&expr)
    }

    #[test]
    fn fixed_intervals() {
        assert_eq!(nanos("INTERVAL '1' MINUTE").unwrap(), 60_000_000_000);
        assert_eq!(nanos("INTERVAL '10 seconds'").unwrap(), 10_000_000_000);
        assert_eq!(nanos("INTERVAL '1.5' SECOND").unwrap(), 1_500_000_000);
        assert_eq!(nanos("INTERVAL '250' MILLISECOND").unwrap(), 250_000_000);
    }

    #[test]
    fn variable_or_malformed_intervals_are_rejected() {
        for sql in [
            "INTERVAL '1' MONTH",
            "INTERVAL '0' SECOND",
            "INTERVAL 'x' SECOND",
            "INTERVAL '1 fortnight'",
            "5",
        ] {
            let err = nanos(sql).unwrap_err().to_string();
            assert!(err.starts_with("invalid interval"), "{sql}: {err}");
        }
    }
}
