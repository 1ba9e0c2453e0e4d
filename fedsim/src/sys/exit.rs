//! Every exit code fedsim gives, decided here and nowhere else: the controller's commands and
//! the site binary's alike. The README's table is checked against [`TABLE`] by a test, so the
//! two cannot drift apart. What a run's end means as a code is the command line's (`cli/exit.rs`).

use std::process::ExitCode;

/// What a command's end means to a script or a CI job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Succeeded,
    Failed,
    BadInput,
    Degraded,
    Cancelled,
}

/// Each code and what it means, as the README's table gives them.
pub const TABLE: &[(Exit, &str)] = &[
    (Exit::Succeeded, "succeeded"),
    (Exit::Failed, "the run failed"),
    (Exit::BadInput, "bad input"),
    (Exit::Degraded, "degraded"),
    (Exit::Cancelled, "cancelled"),
];

impl Exit {
    pub const fn code(self) -> u8 {
        match self {
            Exit::Succeeded => 0,
            Exit::Failed => 1,
            Exit::BadInput => 2,
            Exit::Degraded => 3,
            Exit::Cancelled => 130,
        }
    }

    /// Failed, or cancelled when the cancel flag is up (a long step that gave up because of it).
    pub fn failed_or_cancelled() -> Exit {
        if super::cancel::requested() {
            Exit::Cancelled
        } else {
            Exit::Failed
        }
    }

    pub fn ok_if(ok: bool) -> Exit {
        if ok {
            Exit::Succeeded
        } else {
            Exit::Failed
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// A step's own exit code, passed on as it is (`reap`): not one of fedsim's.
pub fn passed_on(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's exit-code table lists exactly these codes, in this order, each with its
    /// meaning's first words.
    #[test]
    fn the_readme_table_is_this_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        let rows: Vec<(u8, String)> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| exit | meaning |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                let code = cells[0].trim_matches('`').parse().expect("a code");
                (code, cells[1].to_string())
            })
            .collect();
        assert_eq!(rows.len(), TABLE.len(), "README exit table: {rows:?}");
        for ((code, meaning), (exit, want)) in rows.iter().zip(TABLE) {
            assert_eq!(*code, exit.code(), "README row {meaning:?}");
            assert!(
                meaning.starts_with(want),
                "README says {code} is {meaning:?}; the code says {want:?}"
            );
        }
    }
}
