//! `examples/file_server` and `examples/file_client`, driven as a user
//! would: the server spawned on a temporary directory, the client run as a
//! program (through a pipe, and on a pseudo-terminal for the progress bar),
//! and the protocol spoken over raw sockets where a test needs to misbehave.

#[path = "../examples/file_server/protocol.rs"]
mod protocol;
mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use support::{Rng, Server, TempDir, connect, heavy, run_example, tool, wait_for_line};

fn start_server(dir: &Path, extra: &[&str]) -> Server {
    let dir = dir.to_str().expect("a UTF-8 path");
    let mut args = vec!["--addr", "127.0.0.1:0", "--dir", dir];
    args.extend_from_slice(extra);
    Server::start("file_server", &args, 1)
}

/// Runs `file_client --addr ADDR ARGS...` through pipes; returns its exit
/// code, stdout and stderr.
fn client(addr: SocketAddr, args: &[&str]) -> (i32, String, String) {
    let addr = addr.to_string();
    let mut all = vec!["--addr", addr.as_str()];
    all.extend_from_slice(args);
    let (status, out, err) = run_example("file_client", &all, Duration::from_secs(120));
    (status.code().unwrap_or(-1), out, err)
}

/// The SHA-256 of a file, by `sha256sum` (coreutils).
fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

/// Sends `request` on a fresh connection, then our FIN, and reads until the
/// server closes (after an `ERROR`, or at our FIN).
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("the server closes");
    String::from_utf8_lossy(&reply).into_owned()
}

/// Reads one `\n`-terminated line from `stream` (bounded by its timeout).
fn read_line(stream: &mut std::net::TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        assert_eq!(
            stream.read(&mut byte).expect("read a reply line"),
            1,
            "closed mid-line"
        );
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

#[test]
fn files_of_0_1_and_100_mebibytes_go_up_and_down_in_parallel_with_matching_hashes() {
    let _heavy = heavy();
    if !tool("sha256sum") {
        return;
    }
    let served = TempDir::new("served");
    let local = TempDir::new("local");
    let server = start_server(&served.0, &[]);
    let addr = server.addr();
    let sizes = [("empty", 0usize), ("one", 1), ("big", 100 << 20)];
    for (name, size) in sizes {
        fs::write(local.join(name), Rng::new(size as u64 + 1).bytes(size)).unwrap();
    }

    // Three uploads at once.
    let uploads: Vec<_> = sizes
        .iter()
        .map(|&(name, size)| {
            let path = local.join(name).to_str().unwrap().to_string();
            thread::spawn(move || (client(addr, &["put", &path]), path, name, size))
        })
        .collect();
    for upload in uploads {
        let ((code, out, err), path, name, size) = upload.join().unwrap();
        assert_eq!(code, 0, "put {name}: {err}");
        assert_eq!(out, format!("put {path}: {size} bytes as {name}\n"));
        assert_eq!(sha256(&served.join(name)), sha256(&local.join(name)));
    }

    // Three downloads and an upload of the big file under a new name, all
    // at once: downloads and uploads interleaved on the server's one thread.
    let mut jobs: Vec<_> = sizes
        .iter()
        .map(|&(name, size)| {
            let dest = local
                .join(&format!("{name}.back"))
                .to_str()
                .unwrap()
                .to_string();
            thread::spawn(move || {
                let result = client(addr, &["get", name, "-o", &dest]);
                (result, format!("get {name}: {size} bytes -> {dest}\n"))
            })
        })
        .collect();
    let big = local.join("big").to_str().unwrap().to_string();
    jobs.push(thread::spawn(move || {
        let result = client(addr, &["put", &big, "--as", "big2"]);
        (result, format!("put {big}: {} bytes as big2\n", 100 << 20))
    }));
    for job in jobs {
        let ((code, out, err), expected) = job.join().unwrap();
        assert_eq!(code, 0, "{expected}: {err}");
        assert_eq!(out, expected);
    }
    for (name, _) in sizes {
        assert_eq!(
            sha256(&local.join(&format!("{name}.back"))),
            sha256(&local.join(name))
        );
    }
    assert_eq!(sha256(&served.join("big2")), sha256(&local.join("big")));

    let (code, out, _) = client(addr, &["list"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!("big {}\nbig2 {}\nempty 0\none 1\n", 100 << 20, 100 << 20)
    );
}

#[test]
fn an_interrupted_upload_leaves_no_partial_file() {
    let served = TempDir::new("interrupted");
    let mut server = start_server(&served.0, &[]);
    let stderr = server.stderr_lines();
    let mut stream = connect(server.addr());
    stream.write_all(b"PUT half 1000000\n").unwrap();
    stream.write_all(&Rng::new(5).bytes(500_000)).unwrap();
    drop(stream);
    // The server says so when it has removed the temporary file.
    wait_for_line(
        &stderr,
        "upload of half interrupted",
        Duration::from_secs(20),
    );
    let left: Vec<_> = fs::read_dir(&served.0).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    assert_eq!(
        exchange(server.addr(), b"GET half\n"),
        "ERROR half: no such file\n"
    );
}

#[test]
fn names_that_could_leave_the_directory_are_refused_and_end_the_connection() {
    let top = TempDir::new("traversal");
    let served = top.join("served");
    fs::create_dir(&served).unwrap();
    fs::write(top.join("secret"), b"not for you").unwrap();
    std::os::unix::fs::symlink(top.join("secret"), served.join("link")).unwrap();
    fs::write(served.join(".hidden"), b"hidden").unwrap();
    let server = start_server(&served, &[]);
    let addr = server.addr();

    for (request, reply) in [
        (
            "GET ../secret\n",
            "ERROR bad name: may not start with '.'\n",
        ),
        (
            "GET /etc/passwd\n",
            "ERROR bad name: no '/', control characters or spaces\n",
        ),
        (
            "GET a/../../secret\n",
            "ERROR bad name: no '/', control characters or spaces\n",
        ),
        ("GET .hidden\n", "ERROR bad name: may not start with '.'\n"),
        ("GET ..\n", "ERROR bad name: may not start with '.'\n"),
        (
            "GET tab\there\n",
            "ERROR bad name: no '/', control characters or spaces\n",
        ),
        (
            "GET two words\n",
            "ERROR usage: GET name | PUT name size | LIST\n",
        ),
        (
            "PUT ../escape 1\nx",
            "ERROR bad name: may not start with '.'\n",
        ),
        ("PUT ok -1\n", "ERROR bad size '-1'\n"),
        ("GET link\n", "ERROR link: no such file\n"),
        ("DELETE x\n", "ERROR unknown request (GET, PUT or LIST)\n"),
    ] {
        assert_eq!(exchange(addr, request.as_bytes()), reply, "{request:?}");
    }
    let long = format!("GET {}\n", "n".repeat(256));
    assert_eq!(
        exchange(addr, long.as_bytes()),
        "ERROR bad name: 1 to 255 bytes\n"
    );
    let endless = vec![b'x'; 5000];
    assert_eq!(
        exchange(addr, &endless),
        "ERROR line longer than 1024 bytes\n"
    );

    // Nothing was written outside (or inside) the directory.
    assert!(!top.join("escape").exists());
    assert_eq!(fs::read(top.join("secret")).unwrap(), b"not for you");
    // A 255-byte name is fine; LIST shows neither the link nor the hidden file.
    let name = "n".repeat(255);
    let put = format!("PUT {name} 2\nhiLIST\n");
    let mut stream = connect(addr);
    stream.write_all(put.as_bytes()).unwrap();
    assert_eq!(read_line(&mut stream), "OK 2\n");
    assert_eq!(read_line(&mut stream), "OK 1\n");
    assert_eq!(read_line(&mut stream), format!("{name} 2\n"));

    // The client refuses such names before it connects: a usage error.
    let (code, _, err) = client(addr, &["get", "../secret"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_put_replaces_an_existing_file_atomically() {
    let served = TempDir::new("replace");
    let local = TempDir::new("replace-local");
    let server = start_server(&served.0, &[]);
    let addr = server.addr();
    let old = Rng::new(1).bytes(300_000);
    let new = Rng::new(2).bytes(200_000);
    fs::write(local.join("old"), &old).unwrap();
    let old_path = local.join("old").to_str().unwrap().to_string();
    assert_eq!(client(addr, &["put", &old_path, "--as", "data"]).0, 0);

    // Half of the new version is in: readers still get the old one, whole.
    let mut writer = connect(addr);
    writer.write_all(b"PUT data 200000\n").unwrap();
    writer.write_all(&new[..100_000]).unwrap();
    let dest = local.join("during").to_str().unwrap().to_string();
    assert_eq!(client(addr, &["get", "data", "-o", &dest]).0, 0);
    assert!(fs::read(&dest).unwrap() == old, "a reader saw a mix");

    writer.write_all(&new[100_000..]).unwrap();
    assert_eq!(read_line(&mut writer), "OK 200000\n");
    let dest = local.join("after").to_str().unwrap().to_string();
    assert_eq!(client(addr, &["get", "data", "-o", &dest]).0, 0);
    assert!(
        fs::read(&dest).unwrap() == new,
        "the new version did not replace the old"
    );
    assert_eq!(client(addr, &["list"]).1, "data 200000\n");
    // `-o DIR` keeps the name.
    let into = local.0.to_str().unwrap();
    assert_eq!(client(addr, &["get", "data", "-o", into]).0, 0);
    assert!(fs::read(local.join("data")).unwrap() == new);
}

#[test]
fn a_refused_upload_is_answered_after_its_bytes_are_read() {
    let served = TempDir::new("refused");
    let server = start_server(&served.0, &["--max-file", "1000", "--max-files", "1"]);
    let addr = server.addr();

    // Too large: the whole body is sent, then the ERROR read, then EOF.
    let body = Rng::new(9).bytes(2_000_000);
    let mut stream = connect(addr);
    stream.write_all(b"PUT big 2000000\n").unwrap();
    stream.write_all(&body).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(
        reply,
        "ERROR big: 2000000 bytes is over the limit of 1000\n"
    );

    // One file is allowed; a second name is refused, replacing the first is not.
    let mut stream = connect(addr);
    stream.write_all(b"PUT a 3\nabcPUT b 3\nxyz").unwrap();
    assert_eq!(read_line(&mut stream), "OK 3\n");
    assert_eq!(
        read_line(&mut stream),
        "ERROR b: too many files (at most 1)\n"
    );
    assert_eq!(exchange(addr, b"PUT a 2\nhiLIST\n"), "OK 2\nOK 1\na 2\n");
    let names: Vec<_> = fs::read_dir(&served.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["a"]);
}

#[test]
fn a_failed_download_exits_1_and_leaves_no_file() {
    let served = TempDir::new("missing");
    let local = TempDir::new("missing-local");
    let server = start_server(&served.0, &[]);
    let dest = local.join("x").to_str().unwrap().to_string();
    let (code, out, err) = client(server.addr(), &["get", "nothere", "-o", &dest]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(err.contains("nothere: no such file"), "{err}");
    assert_eq!(
        fs::read_dir(&local.0).unwrap().count(),
        0,
        "a partial file was left"
    );
    // Nobody listening: exit 1 as well.
    let (code, _, _) = client(support::unused_addr(), &["list"]);
    assert_eq!(code, 1);
}

#[test]
fn the_progress_bar_is_drawn_on_a_terminal_and_plain_lines_go_through_a_pipe() {
    if !tool("script") {
        return;
    }
    let served = TempDir::new("progress");
    let local = TempDir::new("progress-local");
    let server = start_server(&served.0, &[]);
    let addr = server.addr();
    let path = local.join("blob");
    fs::write(&path, Rng::new(4).bytes(8 << 20)).unwrap();
    let path = path.to_str().unwrap().to_string();

    // Through a pipe: one plain line on stdout, nothing on stderr.
    let (code, out, err) = client(addr, &["put", &path]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("put {path}: {} bytes as blob\n", 8 << 20));
    assert_eq!(err, "");

    // On a pseudo-terminal (`script` gives the program one): the bar.
    let dest = local.join("back").to_str().unwrap().to_string();
    let command = format!(
        "{} --addr {addr} get blob -o {dest}",
        support::example("file_client").display()
    );
    let child = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run script");
    let (status, terminal, _) = support::collect(child, Duration::from_secs(60));
    assert!(status.success(), "file_client on a terminal: {terminal}");
    assert!(terminal.contains("get blob ["), "no bar: {terminal:?}");
    assert!(
        terminal.contains("8.00 MiB/8.00 MiB"),
        "no completed bar: {terminal:?}"
    );
    assert!(terminal.contains(&format!("get blob: {} bytes -> {dest}", 8 << 20)));
    assert_eq!(fs::read(&dest).unwrap(), fs::read(&path).unwrap());
}

#[test]
fn names_are_one_component_of_printable_utf8_not_starting_with_a_dot() {
    for good in [
        "a",
        "report.pdf",
        "café-menu.txt",
        "日本語",
        "x..y",
        &"n".repeat(255),
    ] {
        assert_eq!(protocol::check_name(good), Ok(good), "{good:?}");
    }
    for bad in [
        "",
        ".",
        "..",
        ".profile",
        "a/b",
        "/abs",
        "nul\0byte",
        "del\u{7f}",
        "line\nbreak",
        "no space",
        "nbsp\u{a0}",
        &"n".repeat(256),
    ] {
        assert!(
            protocol::check_name(bad).is_err(),
            "{bad:?} should be refused"
        );
    }
    use protocol::{Request, parse_request};
    assert_eq!(parse_request(b"GET a\r"), Ok(Request::Get { name: "a" }));
    assert_eq!(
        parse_request(b"PUT a 10"),
        Ok(Request::Put {
            name: "a",
            size: 10
        })
    );
    assert_eq!(parse_request(b"LIST"), Ok(Request::List));
    for bad in [
        &b"GET"[..],
        b"PUT a",
        b"PUT a +1",
        b"PUT a 99999999999999999999",
        b"LIST x",
        b"get a",
        b"GET \xff",
    ] {
        assert!(
            parse_request(bad).is_err(),
            "{:?} should be refused",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn clients_past_max_conns_are_told_the_server_is_full() {
    let served = TempDir::new("full");
    let server = start_server(&served.0, &["--max-conns", "1"]);
    let mut first = connect(server.addr());
    first.write_all(b"LIST\n").unwrap();
    assert_eq!(read_line(&mut first), "OK 0\n");
    // The one past the limit is told at once, before it says anything: a
    // request sent first could meet the close as a reset and lose the line
    // (the flake this test once had).
    let mut extra = connect(server.addr());
    let mut reply = Vec::new();
    extra.read_to_end(&mut reply).expect("the server closes");
    assert_eq!(String::from_utf8_lossy(&reply), "ERROR server full\n");
    // The first client is still served.
    first.write_all(b"LIST\n").unwrap();
    assert_eq!(read_line(&mut first), "OK 0\n");
}

#[test]
fn ctrl_c_during_a_download_exits_1_and_leaves_no_partial_file() {
    let local = TempDir::new("interrupt-local");
    // A server that starts a download and then stalls.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dest = local.join("big");
    let child = Command::new(support::example("file_client"))
        .args(["--addr", &addr, "get", "big", "-o", dest.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(read_line(&mut stream), "GET big\n");
    stream.write_all(b"OK 1000000\n").unwrap();
    stream.write_all(&[7; 1000]).unwrap();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (exit, _, err) = support::collect(child, Duration::from_secs(20));
    assert_eq!(exit.code(), Some(1), "{err}");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
    let left: Vec<_> = fs::read_dir(&local.0).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

/// A second server started on the same directory (here on another port)
/// leaves the first one's upload in progress alone: it removes only what a
/// server that is gone left behind (from an outside review: it removed
/// every temporary file, and the first server's upload failed).
#[test]
fn a_second_server_on_the_directory_leaves_running_uploads_alone() {
    let served = TempDir::new("two-servers");
    let first = start_server(&served.0, &[]);
    let mut uploader = connect(first.addr());
    uploader.write_all(b"PUT victim 10\n01234").unwrap();
    // The upload is in progress once its temporary file exists.
    let part = || {
        fs::read_dir(&served.0)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with(".upload."))
    };
    assert!(
        support::kv::eventually(Duration::from_secs(10), part),
        "no temporary file"
    );
    let second = start_server(&served.0, &[]);
    assert!(part(), "the second server removed the first one's upload");
    uploader.write_all(b"56789").unwrap();
    assert_eq!(read_line(&mut uploader), "OK 10\n");
    assert_eq!(fs::read(served.join("victim")).unwrap(), b"0123456789");
    drop(second);
}
