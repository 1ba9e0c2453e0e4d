//! A crosstab's table as people read it: rows by columns, each cell the federated count with
//! the count expected under independence beneath it, and the margins.

use std::fmt::Write as _;

use serde_json::Value;

use super::{esc, RunView};

/// The grid of a crosstab run's `counts` and `expected` named results; None for other kinds.
pub fn crosstab(run: &RunView) -> Option<String> {
    let named = &run.summary.results.as_ref()?.named;
    let counts = named.get("counts")?;
    let labels = |axis: usize| -> Option<Vec<String>> {
        counts["labels"]
            .get(axis)?
            .as_array()?
            .iter()
            .map(|l| l.as_str().map(str::to_string))
            .collect()
    };
    let (rows, cols) = (labels(0)?, labels(1)?);
    let grid = |v: &Value| -> Option<Vec<Vec<f64>>> {
        v["values"]
            .as_array()?
            .iter()
            .map(|r| r.as_array()?.iter().map(Value::as_f64).collect())
            .collect()
    };
    let n = grid(counts)?;
    let e = named.get("expected").and_then(grid);
    if n.len() != rows.len() || n.iter().any(|r| r.len() != cols.len()) {
        return None;
    }
    let mut t = String::from("<table id=\"crosstab\"><caption>Counts, and beneath each the count expected if rows and columns were independent</caption><tr><th></th>");
    for c in &cols {
        let _ = write!(t, "<th>{}</th>", esc(c));
    }
    t.push_str("<th>total</th></tr>");
    for (i, r) in rows.iter().enumerate() {
        let _ = write!(t, "<tr><th>{}</th>", esc(r));
        for (j, count) in n[i].iter().enumerate() {
            let expected = e
                .as_ref()
                .and_then(|e| e.get(i)?.get(j).copied())
                .map_or(String::new(), |x| format!("<br><small>{x:.2}</small>"));
            let _ = write!(
                t,
                "<td data-row=\"{i}\" data-col=\"{j}\">{count}{expected}</td>"
            );
        }
        let _ = write!(t, "<td>{}</td></tr>", n[i].iter().sum::<f64>());
    }
    t.push_str("<tr><th>total</th>");
    for j in 0..cols.len() {
        let _ = write!(t, "<td>{}</td>", n.iter().map(|r| r[j]).sum::<f64>());
    }
    let _ = write!(
        t,
        "<td>{}</td></tr></table>",
        n.iter().flatten().sum::<f64>()
    );
    Some(t)
}
