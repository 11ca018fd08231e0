//! Saved runs: a run's JSON kept under a name in a results folder, and found again by that name
//! or by the path of any JSON file a run printed.

use crate::error::{BenchError, Result};
use crate::report::Report;
use std::path::{Path, PathBuf};

/// The folder saved runs go to, under the bench's parent directory (`--dir`, or the current one).
pub const RESULTS_DIR: &str = "bench-results";

/// Where the run saved as `name` lives in `results_dir`.
pub fn saved_path(results_dir: &Path, name: &str) -> Result<PathBuf> {
    check_name(name, results_dir)?;
    Ok(results_dir.join(format!("{name}.json")))
}

/// Writes `report`'s JSON as `name` in `results_dir` (made if missing), replacing an earlier run
/// of that name only once the new file is complete. Returns the file's path.
pub fn save_run(report: &Report, results_dir: &Path, name: &str) -> Result<PathBuf> {
    let path = saved_path(results_dir, name)?;
    std::fs::create_dir_all(results_dir).map_err(|e| BenchError::io("mkdir", results_dir, e))?;
    let text = serde_json::to_string_pretty(&report.to_json()).map_err(|e| saved(&path, e))?;
    let partial = results_dir.join(format!(".{name}.json.partial"));
    std::fs::write(&partial, text + "\n").map_err(|e| BenchError::io("write", &partial, e))?;
    std::fs::rename(&partial, &path).map_err(|e| BenchError::io("rename", &path, e))?;
    Ok(path)
}

/// The run that `spec` names: a JSON file at that path if there is one, else the run saved as
/// `spec` in `results_dir`. Returns where it was found, and the run.
pub fn load_run(spec: &str, results_dir: &Path) -> Result<(PathBuf, Report)> {
    let as_path = PathBuf::from(spec);
    let path = if as_path.is_file() {
        as_path
    } else {
        let path = saved_path(results_dir, spec).map_err(|_| not_found(spec, results_dir))?;
        if !path.is_file() {
            return Err(not_found(spec, results_dir));
        }
        path
    };
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::io("read", &path, e))?;
    let value = serde_json::from_str(&text).map_err(|e| saved(&path, e))?;
    let report = Report::from_json(&value).map_err(|message| saved(&path, message))?;
    Ok((path, report))
}

/// A name is one plain file name: letters, digits, `-`, `_`, `.`, not starting with a dot, so
/// that it can never reach outside the results folder.
fn check_name(name: &str, results_dir: &Path) -> Result<()> {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name.starts_with('.') || !plain {
        return Err(BenchError::SavedRun {
            path: results_dir.join(name),
            message:
                "a saved run's name is letters, digits, '-', '_' and '.', not starting with '.'"
                    .into(),
        });
    }
    Ok(())
}

fn not_found(spec: &str, results_dir: &Path) -> BenchError {
    BenchError::SavedRun {
        path: PathBuf::from(spec),
        message: format!(
            "neither a JSON file nor a run saved in {} (saved runs are made with --save NAME)",
            results_dir.display()
        ),
    }
}

fn saved(path: &Path, message: impl std::fmt::Display) -> BenchError {
    BenchError::SavedRun {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}
