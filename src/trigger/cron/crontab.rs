//! What a crontab string needs before croner reads it: day-of-week ranges that wrap around the
//! week (`sat-mon`, `6-1`), which croner refuses, are written out as lists; a year past croner's
//! limit is refused with a message that names the limit. Everything else goes to croner as given,
//! so its error messages stay the ones for genuinely bad input.

use std::borrow::Cow;

use super::fields::CRONER_MAX_YEAR;

const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// The pattern to hand croner, or why the expression is refused.
pub(super) fn prepare(expression: &str) -> Result<Cow<'_, str>, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    // Seconds first with 6 or 7 fields, year last with 7 (croner's optional fields).
    let (dow, year) = match fields.len() {
        5 => (4, None),
        6 => (5, None),
        7 => (5, Some(6)),
        // `@daily` and kin, or a field count croner will refuse with its own message.
        _ => return Ok(Cow::Borrowed(expression)),
    };
    if let Some(year) = year {
        check_years(fields[year])?;
    }
    match unwrap_weekdays(fields[dow]) {
        None => Ok(Cow::Borrowed(expression)),
        Some(rewritten) => {
            let mut fields: Vec<String> = fields.iter().map(|f| (*f).to_string()).collect();
            fields[dow] = rewritten;
            Ok(Cow::Owned(fields.join(" ")))
        }
    }
}

/// Refuses a year croner cannot match, naming its limit.
fn check_years(field: &str) -> Result<(), String> {
    for item in field.split(',') {
        let range = item.split('/').next().unwrap_or(item);
        for number in range.split('-') {
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if number.parse::<u32>().map_or(true, |y| y > CRONER_MAX_YEAR) {
                return Err(format!(
                    "has the year {number}: a crontab year can be at most {CRONER_MAX_YEAR}, the \
                     last year croner matches (the field API, Cron::new().year(..), accepts years \
                     up to 9999 as APScheduler does, but finds no fire time after \
                     {CRONER_MAX_YEAR}-01-01)"
                ));
            }
        }
    }
    Ok(())
}

/// A day of week: 0-7 (0 and 7 are Sunday) or a three-letter name, in any case.
fn weekday(text: &str) -> Option<u32> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = WEEKDAYS.iter().position(|d| *d == lower) {
        return u32::try_from(i).ok();
    }
    if text.is_empty() || text.len() > 1 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|d| *d <= 7)
}

/// The day-of-week field with every wrapping range written as a list (`sat-mon/2` →
/// `6,1`), or `None` when it has none.
fn unwrap_weekdays(field: &str) -> Option<String> {
    let (plus, body) = match field.strip_prefix('+') {
        Some(body) => ("+", body),
        None => ("", field),
    };
    let mut changed = false;
    let items: Vec<String> = body
        .split(',')
        .map(|item| match wrapped_range(item) {
            Some(days) => {
                changed = true;
                days
            }
            None => item.to_string(),
        })
        .collect();
    changed.then(|| format!("{plus}{}", items.join(",")))
}

/// `a-b` or `a-b/s` whose start is after its end, as a list of the days it covers.
fn wrapped_range(item: &str) -> Option<String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) if !step.is_empty() && step.bytes().all(|b| b.is_ascii_digit()) => {
            (range, step.parse::<u32>().ok().filter(|s| *s >= 1)?)
        }
        Some(_) => return None,
        None => (item, 1),
    };
    let (a, b) = range.split_once('-')?;
    let (from, to) = (weekday(a)?, weekday(b)?);
    if from <= to {
        return None;
    }
    // Sunday as 7 starts the range on Sunday: 7-3 is sun-wed.
    let from = from % 7;
    let span = if to >= from { to - from } else { to + 7 - from };
    let days: Vec<String> = (0..=span)
        .step_by(usize::try_from(step).ok()?)
        .map(|offset| ((from + offset) % 7).to_string())
        .collect();
    Some(days.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_weekdays_are_listed() {
        assert_eq!(prepare("0 12 * * sat-mon").unwrap(), "0 12 * * 6,0,1");
        assert_eq!(prepare("0 12 * * 6-1").unwrap(), "0 12 * * 6,0,1");
        assert_eq!(
            prepare("0 0 12 * * FRI-Mon/2 2030").unwrap(),
            "0 0 12 * * 5,0 2030"
        );
        assert_eq!(prepare("0 12 * * +7-2,5L").unwrap(), "0 12 * * +0,1,2,5L");
        assert_eq!(prepare("0 12 * * mon-fri").unwrap(), "0 12 * * mon-fri");
        assert_eq!(prepare("0 12 * * 8-1").unwrap(), "0 12 * * 8-1");
        assert!(prepare("0 0 0 1 1 * 5001").is_err());
        assert!(prepare("0 0 0 1 1 * 2024-99999999999/2").is_err());
        assert!(prepare("0 0 0 1 1 * 2024-5000/9999").is_ok());
    }
}
