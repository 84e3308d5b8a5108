//! `scripts/probe` against a fresh `tonearm up`: about 400 requests a new user and an
//! attacker would send (malformed and oversized bodies, injection strings, paging, token
//! tampering, refresh reuse, throttling, signed-URL tampering, uploads, privacy), each
//! checked against the public contract. See docs/security.md for the list.

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_of_the_public_edge_finds_nothing_wrong() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/probe");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .args(["--binary", env!("CARGO_BIN_EXE_tonearm")])
            .output()
            .expect("python3 runs scripts/probe (scripts/test installs it)")
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}\n{}", String::from_utf8_lossy(&output.stderr));
    let summary = said.lines().last().unwrap_or_default();
    assert!(summary.starts_with("probe: ") && summary.ends_with(" 0 failed"), "{said}");
}
