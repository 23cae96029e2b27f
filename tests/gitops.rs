//! The example GitOps repository (examples/gitops) as a platform team uses
//! it: its CI workflow's gate step and its pre-commit hook run, as written,
//! in a real Git repository with an `origin`, on pull-request branches that
//! change nothing, loosen a rule and tighten one.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=ci", "-c", "user.email=ci@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A clone of a bare `origin` whose main branch holds examples/gitops.
fn platform_repo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    let repo = dir.path().join("repo");
    git(dir.path(), &["init", "--quiet", "--bare", origin.to_str().unwrap()]);
    git(dir.path(), &["clone", "--quiet", origin.to_str().unwrap(), repo.to_str().unwrap()]);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gitops"), &repo);
    git(&repo, &["checkout", "--quiet", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "--quiet", "-m", "policies"]);
    git(&repo, &["push", "--quiet", "origin", "main"]);
    (dir, repo)
}

/// A pull-request branch off main that rewrites `from` to `to` in the policies.
fn branch(repo: &Path, name: &str, from: &str, to: &str) {
    git(repo, &["checkout", "--quiet", "-B", name, "origin/main"]);
    edit(repo, from, to);
    git(repo, &["commit", "--quiet", "-am", name]);
}

fn edit(repo: &Path, from: &str, to: &str) {
    let path = repo.join("policies/baseline.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from}");
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// Run a shell command as the workflow or hook does, with `xct` on PATH.
fn sh(repo: &Path, command: &str, env: &[(String, String)]) -> (i32, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_xct")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .current_dir(repo)
        .args(["-c", command])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PATH", path)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The workflow's gate step: its `run` and `env`, with the pull request's
/// base branch where GitHub would put it.
fn workflow_gate(repo: &Path) -> (String, Vec<(String, String)>) {
    let text = std::fs::read_to_string(repo.join(".github/workflows/policy-gate.yaml")).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let steps = doc["jobs"]["gate"]["steps"].as_array().unwrap();
    let step = steps.iter().find(|s| s["name"] == "Policy gate").expect("a Policy gate step");
    let env = step["env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().replace("${{ github.base_ref }}", "main")))
        .collect();
    (step["run"].as_str().unwrap().to_string(), env)
}

#[test]
fn the_workflow_gate_passes_a_no_op_and_fails_loosening_or_tightening() {
    let (_dir, repo) = platform_repo();
    let (run, env) = workflow_gate(&repo);

    branch(&repo, "reword", "Scaling is allowed, up to 10 replicas", "Scaling is allowed (at most 10 replicas)");
    let (code, out) = sh(&repo, &run, &env);
    assert_eq!(code, 0, "a change that alters no verdict passes: {out}");
    assert!(out.contains("0 changed"), "{out}");

    branch(&repo, "loosen", "proposal.target.kind == 'Secret'", "proposal.target.kind == 'NoSuchKind'");
    let (code, out) = sh(&repo, &run, &env);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("::error") && out.contains("newly allowed"), "a GitHub annotation per change: {out}");
    assert!(out.contains("1 newly allowed, 0 newly denied"), "{out}");

    branch(&repo, "tighten", "proposal.arguments.replicas <= 10", "proposal.arguments.replicas <= 1");
    let (code, out) = sh(&repo, &run, &env);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("newly denied") && out.contains("0 newly allowed"), "{out}");

    // The gate leaves no worktree behind.
    let worktrees = Command::new("git").current_dir(&repo).args(["worktree", "list"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&worktrees.stdout).lines().count(), 1);
}

#[test]
fn the_pre_commit_hook_gates_uncommitted_policy_edits() {
    let (_dir, repo) = platform_repo();
    let text = std::fs::read_to_string(repo.join(".pre-commit-config.yaml")).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let hook = &doc["repos"][0]["hooks"][0];
    assert_eq!(hook["id"], "xct-policy-gate");
    let entry = hook["entry"].as_str().unwrap();
    let (code, out) = sh(&repo, entry, &[]);
    assert_eq!(code, 0, "nothing edited: {out}");
    edit(&repo, "proposal.target.kind == 'Secret'", "proposal.target.kind == 'NoSuchKind'");
    let (code, out) = sh(&repo, entry, &[]);
    assert_eq!(code, 1, "an edit that loosens a rule is stopped before the commit: {out}");
    assert!(out.contains("newly allowed: demo/scale-web step 4"), "{out}");
}
