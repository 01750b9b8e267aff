//! Subprocesses with streamed output: every line becomes a progress event and a line of the
//! build's log file; a failure quotes the last lines and points at the log.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::error::OsImageError;
use super::events::{Reporter, Step};

/// How many of the last output lines an error quotes.
const TAIL: usize = 12;

/// The log file of one production, kept after a failure (the work directory is not).
pub(crate) struct Logbook {
    path: PathBuf,
    file: BufWriter<tokio::fs::File>,
}

impl Logbook {
    pub async fn create(path: &Path) -> Result<Logbook, OsImageError> {
        let fail = || OsImageError::io(Step::Configure, format!("create {}", path.display()));
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(fail())?;
        }
        let file = tokio::fs::File::create(path).await.map_err(fail())?;
        Ok(Logbook {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logging is best effort: a full disk shows up in the step that writes the image anyway.
    pub async fn line(&mut self, step: Step, line: &str) {
        let _ = self
            .file
            .write_all(format!("[{step}] {line}\n").as_bytes())
            .await;
    }

    pub async fn flush(&mut self) {
        let _ = self.file.flush().await;
    }
}

/// The environment every tool runs with: no questions, plain messages, the admin's binaries.
pub(crate) fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    cmd
}

/// The Debian package that ships a tool, for the "install it" advice.
pub(crate) fn package_of(program: &str) -> &'static str {
    match program {
        "debootstrap" => "debootstrap",
        "mkfs.ext4" => "e2fsprogs",
        "qemu-img" => "qemu-utils",
        "grub-mkimage" => "grub-pc-bin",
        _ => "coreutils",
    }
}

/// Runs `cmd` to its end, streaming stdout and stderr lines as `Log` events.
pub(crate) async fn run(
    step: Step,
    mut cmd: Command,
    log: &mut Logbook,
    rep: &mut Reporter<'_>,
) -> Result<(), OsImageError> {
    let std = cmd.as_std();
    let program = std.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = std
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    log.line(step, &format!("$ {program} {}", args.join(" ")))
        .await;
    // kill_on_drop: a cancelled build must not leave a debootstrap running behind it.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => OsImageError::ToolMissing {
            step,
            program: program.clone(),
            package: package_of(&program),
        },
        _ => OsImageError::Io {
            step,
            what: format!("start {program}"),
            source: e,
        },
    })?;

    let (tx, mut rx) = mpsc::channel::<String>(256);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, tx.clone()));
    }
    drop(tx);
    let mut tail = VecDeque::with_capacity(TAIL);
    while let Some(line) = rx.recv().await {
        log.line(step, &line).await;
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        rep.log(step, line);
    }
    let status = child
        .wait()
        .await
        .map_err(OsImageError::io(step, format!("wait for {program}")))?;
    log.flush().await;
    if status.success() {
        return Ok(());
    }
    Err(OsImageError::Tool {
        step,
        program,
        status: match status.code() {
            Some(code) => format!("exit {code}"),
            None => "killed by a signal".into(),
        },
        log: log.path().to_path_buf(),
        last: Vec::from(tail).join("\n"),
    })
}

/// Lines of one pipe, decoded leniently: a tool's odd byte must not stop the build.
async fn forward_lines(pipe: impl AsyncRead + Unpin, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                if tx.send(line.to_string()).await.is_err() {
                    return;
                }
            }
        }
    }
}
