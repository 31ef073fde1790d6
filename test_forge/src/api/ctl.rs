//! Faults and the `/_testforge/` control routes.

use super::*;

/// Commit `content` at `file` on the branch `req` targets, as another writer.
pub(super) fn concurrent_commit(st: &State, req: &Request, path: &str, file: &str, content: &[u8]) {
    let segs: Vec<String> = path.split('/').map(percent_decode).collect();
    // /api/v1/repos/{owner}/{name}/...
    let (Some(owner), Some(name)) = (segs.get(4), segs.get(5)) else {
        return;
    };
    let g = Git::new(&st.repo_dir(owner, name));
    let branch = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|b| b["branch"].as_str().map(str::to_string))
        .filter(|b| !b.is_empty())
        .or_else(|| req.query("ref"))
        .unwrap_or_else(|| g.head_branch());
    let _lock = st.git_lock.lock().unwrap();
    let parent = g.branch_commit(&branch);
    let who = Person {
        name: "concurrent-writer".into(),
        email: "concurrent-writer@example.org".into(),
    };
    let _ = g.commit(
        &branch,
        parent.as_deref(),
        &[Change {
            path: file.to_string(),
            content: Some(content.to_vec()),
        }],
        "Concurrent change",
        &who,
        &who,
    );
}

pub(super) fn control(st: &State, req: &Request, rest: &str) -> Response {
    match (req.method.as_str(), rest) {
        ("GET", "log") => {
            let log: Vec<Value> = st
                .log
                .lock()
                .unwrap()
                .iter()
                .map(|l| json!({"method": l.method, "path": l.path, "status": l.status, "fault": l.fault}))
                .collect();
            Response::json(200, &Value::Array(log))
        }
        ("DELETE", "stats") => {
            *st.stats.lock().unwrap() = crate::Stats::default();
            Response::json(200, &json!({"ok": true}))
        }
        ("DELETE", "log") => {
            st.log.lock().unwrap().clear();
            Response::json(200, &json!({"ok": true}))
        }
        ("DELETE", "faults") => {
            st.faults.lock().unwrap().clear();
            Response::json(200, &json!({"ok": true}))
        }
        ("POST", "faults") => match parse_fault(&req.body) {
            Ok(f) => {
                st.faults.lock().unwrap().push(f);
                Response::json(201, &json!({"ok": true}))
            }
            Err(m) => error(st, 422, &m),
        },
        ("POST", "repos") => {
            let Ok(v) = serde_json::from_slice::<Value>(&req.body) else {
                return error(st, 422, "invalid JSON");
            };
            let owner = v["owner"].as_str().unwrap_or("");
            let name = v["name"].as_str().unwrap_or("");
            if !valid_name(owner) || !valid_name(name) {
                return error(st, 422, "owner and name are required");
            }
            if st.repo_dir(owner, name).exists() {
                return error(st, 409, "The repository with the same name already exists.");
            }
            let empty = v["empty"].as_bool().unwrap_or(true);
            match create_repo_on_disk(st, owner, name, true, "main", !empty) {
                Ok(()) => Response::json(201, &json!({"ok": true})),
                Err(e) => error(st, 500, &e),
            }
        }
        _ => error(st, 404, "not found"),
    }
}

/// `{"method": "PUT"|null, "path_contains": "...", "times": 1, "action":
/// "fail"|"delay"|"drop_before"|"drop_after"|"reset_after"|"fail_after"|"reply"|"reply_after"|
/// "concurrent_commit", "status", "message", "delay_ms", "file", "content" (base64),
/// "content_type", "headers" (an object), "body" (text, sent as is)}`
pub(super) fn parse_fault(body: &[u8]) -> Result<Fault, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let action = match v["action"].as_str().unwrap_or("") {
        "fail" => FaultAction::Fail {
            status: v["status"].as_u64().unwrap_or(500) as u16,
            message: v["message"].as_str().unwrap_or("").to_string(),
        },
        "delay" => FaultAction::Delay(Duration::from_millis(
            v["delay_ms"].as_u64().unwrap_or(1000),
        )),
        "drop_before" => FaultAction::DropBefore,
        "drop_after" => FaultAction::DropAfter,
        "reset_after" => FaultAction::ResetAfter,
        "fail_after" => FaultAction::FailAfter {
            status: v["status"].as_u64().unwrap_or(500) as u16,
            message: v["message"].as_str().unwrap_or("").to_string(),
        },
        "reply" | "reply_after" => {
            let raw = crate::RawReply {
                status: v["status"].as_u64().unwrap_or(200) as u16,
                content_type: v["content_type"]
                    .as_str()
                    .unwrap_or("text/html")
                    .to_string(),
                headers: v["headers"]
                    .as_object()
                    .map(|h| {
                        h.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                body: v["body"].as_str().unwrap_or("").as_bytes().to_vec(),
            };
            if v["action"] == "reply" {
                FaultAction::Reply(raw)
            } else {
                FaultAction::ReplyAfter(raw)
            }
        }
        "concurrent_commit" => FaultAction::ConcurrentCommit {
            path: v["file"]
                .as_str()
                .ok_or("concurrent_commit needs file")?
                .to_string(),
            content: B64
                .decode(v["content"].as_str().unwrap_or(""))
                .map_err(|e| format!("content: {e}"))?,
        },
        other => return Err(format!("unknown action {other:?}")),
    };
    Ok(Fault {
        method: v["method"].as_str().map(str::to_string),
        path_contains: v["path_contains"].as_str().unwrap_or("").to_string(),
        times: v["times"].as_u64().unwrap_or(1) as usize,
        action,
    })
}

/// `GET /_testforge/stats`: the counters as JSON (no token needed: they
/// hold no secret). Test-only; a real Forgejo has no such route.
pub(super) fn stats_json(st: &State) -> Response {
    let s = st.stats.lock().unwrap().clone();
    let by_status: serde_json::Map<String, Value> = s
        .by_status
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    Response::json(
        200,
        &json!({
            "requests": s.requests, "commits": s.commits, "lost_races": s.lost_races,
            "too_large": s.too_large, "by_status": by_status,
        }),
    )
}
