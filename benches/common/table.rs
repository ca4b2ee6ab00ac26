//! The figures table every scale benchmark prints: scenario, apsched, floor, ratio, goal,
//! result. Included by each bench with `#[path]` (benches are separate crates).

use std::fmt::Write as _;

/// How a figure compares: a cost (lower is better; ratio apsched/floor) or a rate (higher is
/// better; ratio floor/apsched, so a ratio above 1 always means apsched does worse).
#[derive(Clone, Copy)]
pub enum Kind {
    #[allow(dead_code)] // not every bench has costs
    Cost,
    Rate,
    /// A tally, or a figure without a floor: no ratio.
    Count,
}

/// One line of the table.
pub struct Row {
    pub scenario: String,
    pub apsched: f64,
    /// `NaN` where the scenario has no floor.
    pub floor: f64,
    pub kind: Kind,
    pub goal: String,
    pub pass: Option<bool>,
}

/// A figure as the table shows it: thousands separated, `-` for none.
fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 10_000.0 {
        // Thousands separators for rates.
        let s = format!("{:.0}", v);
        let (sign, digits) = s.split_at(usize::from(s.starts_with('-')));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() < 0.01 {
        format!("{v:.6}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Prints `rows` as a Markdown table, then `footnote`.
pub fn print_table(rows: &[Row], footnote: &str) {
    print_table_as(rows, ["apsched", "floor"], footnote);
}

/// The same, naming the two figure columns (`Row::apsched`, `Row::floor`) as given.
pub fn print_table_as(rows: &[Row], columns: [&str; 2], footnote: &str) {
    let header = [
        "scenario", columns[0], columns[1], "ratio", "goal", "result",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let ratio = match r.kind {
                Kind::Cost if r.floor > 0.0 => format!("{:.2}x", r.apsched / r.floor),
                Kind::Rate if r.apsched > 0.0 => format!("{:.2}x", r.floor / r.apsched),
                _ => "-".into(),
            };
            [
                r.scenario.clone(),
                fmt_num(r.apsched),
                fmt_num(r.floor),
                ratio,
                r.goal.clone(),
                match r.pass {
                    Some(true) => "PASS".into(),
                    Some(false) => "FAIL".into(),
                    None => String::new(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |row: &[String]| {
        let mut s = String::from("|");
        for (i, (c, w)) in row.iter().zip(widths).enumerate() {
            if i == 0 || i == 4 {
                let _ = write!(s, " {c:<w$} |");
            } else {
                let _ = write!(s, " {c:>w$} |");
            }
        }
        s
    };
    println!("{}", line(&header.map(String::from)));
    let mut sep = String::from("|");
    for (i, w) in widths.iter().enumerate() {
        let dashes = "-".repeat(*w);
        if i == 0 || i == 4 {
            let _ = write!(sep, "-{dashes}-|");
        } else {
            let _ = write!(sep, "-{dashes}:|");
        }
    }
    println!("{sep}");
    for row in &cells {
        println!("{}", line(row));
    }
    println!("{footnote}");
}
