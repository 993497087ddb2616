//! ControllerRevisions: the rollout history of DaemonSets and StatefulSets, as their real
//! controllers keep it (and `kubectl rollout history/undo` read it).
//!
//! One ControllerRevision per distinct pod template, named `<owner>-<hash>`, controlled by the
//! owner, labelled with the template's labels plus `controller-revision-hash: <hash>`, with the
//! owner's annotations (so `kubernetes.io/change-cause` shows in the history), `revision` =
//! one more than the highest so far, and `data` = the strategic merge patch that restores the
//! template (`{"spec": {"template": {…, "$patch": "replace"}}}`), which is what `kubectl
//! rollout undo` applies. Returning to an earlier template (an undo) re-uses its revision
//! object and gives it the next number. Revisions beyond `spec.revisionHistoryLimit` (default
//! 10), oldest first, are deleted unless they are the current one.

use serde_json::{Value, json};

use super::Controllers;
use super::util::{self, at, i64_at};
use crate::store::{ResourceType, kinds};

const CONTROLLER: &str = "controller-revisions";
/// The label carrying a revision's hash (on revisions and on DaemonSet pods).
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// The hash of `owner`'s pod template (ComputeHash: FNV-32a over the template, then
/// SafeEncodeString).
pub fn template_hash(owner: &Value) -> String {
    util::pod_template_hash(
        &at(owner, &["spec", "template"])
            .cloned()
            .unwrap_or(json!({})),
        i64_at(owner, &["status", "collisionCount"]).filter(|n| *n > 0),
    )
}

/// The name of the revision of `owner` with template hash `hash`.
pub fn revision_name(owner: &Value, hash: &str) -> String {
    format!("{}-{hash}", util::name(owner))
}

fn revision_number(cr: &Value) -> i64 {
    i64_at(cr, &["revision"]).unwrap_or(0)
}

/// The revision object for `owner`'s current template.
fn revision_object(owner: &Value, hash: &str, number: i64) -> Value {
    let mut template = at(owner, &["spec", "template"])
        .cloned()
        .unwrap_or(json!({}));
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    let mut labels = at(owner, &["spec", "template", "metadata", "labels"])
        .cloned()
        .unwrap_or(json!({}));
    util::object_at_mut(&mut labels, &[]).insert(REVISION_HASH_LABEL.into(), json!(hash));
    let mut meta = json!({
        "name": revision_name(owner, hash),
        "namespace": util::namespace(owner),
        "labels": labels,
        "ownerReferences": [util::owner_reference(owner)],
    });
    if let Some(annotations) = at(owner, &["metadata", "annotations"]) {
        let mut annotations = annotations.clone();
        if let Some(m) = annotations.as_object_mut() {
            m.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
        util::set_at(&mut meta, &["annotations"], annotations);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": meta,
        "data": {"spec": {"template": template}},
        "revision": number,
    })
}

/// Makes sure `owner` (of type `owner_rt`) has a revision for its current template and prunes
/// its history. Cheap when nothing changed since the last call for this owner and template.
pub fn sync(c: &mut Controllers, owner_rt: &ResourceType, owner: &Value) {
    let uid = util::uid(owner).to_string();
    let hash = template_hash(owner);
    let key = format!("{}/{uid}", owner_rt.kind);
    if c.state.revisions_synced.get(&key) == Some(&hash) {
        return;
    }
    let rt = kinds::controller_revisions();
    let (all, _) = c.store.list(&rt, util::namespace(owner));
    let mut owned: Vec<Value> = all
        .into_iter()
        .filter(|cr| util::is_controlled_by(cr, &uid))
        .collect();
    let highest = owned.iter().map(revision_number).max().unwrap_or(0);
    let name = revision_name(owner, &hash);
    match owned.iter().find(|cr| util::name(cr) == name) {
        Some(cr) if revision_number(cr) < highest => {
            let cr = cr.clone();
            c.modify(CONTROLLER, &rt, &cr, |v| {
                util::set_at(v, &["revision"], json!(highest + 1));
            });
        }
        Some(_) => {}
        None => match c.create(CONTROLLER, &rt, revision_object(owner, &hash, highest + 1)) {
            Ok(created) => owned.push(created),
            Err(_) => return,
        },
    }
    let limit = i64_at(owner, &["spec", "revisionHistoryLimit"]).unwrap_or(10);
    let mut old: Vec<Value> = owned
        .into_iter()
        .filter(|cr| util::name(cr) != name)
        .collect();
    old.sort_by_key(revision_number);
    let excess = (old.len() as i64 - limit.max(0)).max(0) as usize;
    for cr in old.iter().take(excess) {
        c.delete(CONTROLLER, &rt, cr);
    }
    c.state.revisions_synced.insert(key, hash);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_data_replaces_the_template() {
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "u1",
                         "annotations": {"kubernetes.io/change-cause": "v2"}},
            "spec": {"template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "a", "image": "a:2"}]}}}});
        let hash = template_hash(&ds);
        let cr = revision_object(&ds, &hash, 3);
        assert_eq!(cr["metadata"]["name"], format!("agent-{hash}"));
        assert_eq!(cr["revision"], 3);
        assert_eq!(cr["data"]["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            cr["data"]["spec"]["template"]["spec"]["containers"][0]["image"],
            "a:2"
        );
        assert_eq!(cr["metadata"]["labels"][REVISION_HASH_LABEL], json!(hash));
        assert_eq!(
            cr["metadata"]["annotations"]["kubernetes.io/change-cause"],
            "v2"
        );
        assert_eq!(cr["metadata"]["ownerReferences"][0]["uid"], "u1");
    }
}
