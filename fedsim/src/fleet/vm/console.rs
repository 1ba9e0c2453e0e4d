//! A VM's serial console, as log lines: a thread follows the console file and stamps each new
//! line with the time it appeared, into `console.jsonl` next to it. The run's merged log then
//! shows boot problems in their place on the timeline.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct ConsoleLog {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The JSON-lines file a console's stamped lines go to.
pub fn jsonl(console: &Path) -> PathBuf {
    console.with_file_name("console.jsonl")
}

fn level(line: &str) -> &'static str {
    let l = line.to_ascii_lowercase();
    if l.contains("kernel panic") || l.contains("[failed]") || l.contains("failed to start") {
        "WARN"
    } else {
        "INFO"
    }
}

/// The SSH host key a VM announced on its serial console (`FEDSIM-HOSTKEY ssh-ed25519 KEY`, by
/// the image's first-boot unit), the latest if it booted more than once. Only a whole line whose
/// key decodes to a whole ed25519 key counts: the console is read while the guest writes it, and
/// a key cut mid-line, once trusted, fails every login until the boot times out.
pub fn announced_host_key(console: &str) -> Option<String> {
    let at = console.rfind("FEDSIM-HOSTKEY ")? + "FEDSIM-HOSTKEY ".len();
    let line = &console[at..];
    let line = &line[..line.find('\n')?];
    let mut words = line.split_whitespace();
    let (kind, key) = (words.next()?, words.next()?);
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD.decode(key).ok()?;
    // string "ssh-ed25519" (4 + 11 bytes), then string of the 32-byte key (4 + 32).
    let whole = blob.len() == 51 && blob.get(4..15) == Some(b"ssh-ed25519".as_slice());
    (kind == "ssh-ed25519" && whole).then(|| format!("{kind} {key}"))
}

impl ConsoleLog {
    /// Follow `console` from byte `from` on, for `site`.
    pub fn follow(console: PathBuf, site: String, from: u64) -> ConsoleLog {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("console-{site}"))
            .spawn(move || {
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(jsonl(&console));
                let Ok(mut out) = out else { return };
                let mut offset = from;
                let mut partial = Vec::new();
                loop {
                    let done = flag.load(Ordering::Relaxed);
                    if let Ok(mut f) = std::fs::File::open(&console) {
                        if f.seek(SeekFrom::Start(offset)).is_ok() {
                            let mut buf = Vec::new();
                            if let Ok(n) = f.read_to_end(&mut buf) {
                                offset += n as u64;
                                partial.extend_from_slice(&buf);
                            }
                        }
                    }
                    while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=nl).collect();
                        let text = crate::logs::plain_text(&String::from_utf8_lossy(&line));
                        if text.is_empty() {
                            continue;
                        }
                        let mut v = crate::logs::stamped(level(&text), &text);
                        v.insert("site".into(), site.clone().into());
                        v.insert("phase".into(), "console".into());
                        let v = serde_json::Value::Object(v);
                        let _ = writeln!(out, "{v}");
                    }
                    if done {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
            .ok();
        ConsoleLog { stop, thread }
    }
}

impl Drop for ConsoleLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_announced_key_is_trusted() {
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIFFsKm9elL4aRXnXZhCOcstJuW8BdL7dV6UIALlUJ3Dw";
        let line = format!("boot\r\nFEDSIM-HOSTKEY ssh-ed25519 {key} root@site-1\r\n");
        assert_eq!(
            announced_host_key(&line),
            Some(format!("ssh-ed25519 {key}"))
        );
        // Read while the guest was still writing it: not yet.
        for cut in [line.len() - 2, line.len() - 14, line.len() - 30] {
            assert_eq!(announced_host_key(&line[..cut]), None, "{}", &line[..cut]);
        }
        // A mangled key is no key.
        let mangled = line.replace(&key[50..], "!!");
        assert_eq!(announced_host_key(&mangled), None);
    }

    #[test]
    fn console_lines_are_cleaned_and_stamped() {
        assert_eq!(
            crate::logs::plain_text("\u{1b}[0;32m  OK  \u{1b}[0m] Started ssh\r\n"),
            "  OK  ] Started ssh"
        );
        assert_eq!(level("[FAILED] Failed to start x"), "WARN");
        let tmp = tempfile::tempdir().unwrap();
        let console = tmp.path().join("console.log");
        std::fs::write(&console, "booting\nKernel panic - not syncing\n").unwrap();
        drop(ConsoleLog::follow(console.clone(), "site-1".into(), 0));
        let text = std::fs::read_to_string(jsonl(&console)).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[0]["site"], "site-1");
    }
}
