"""Label Studio interop: write the queue as Label Studio tasks plus a labeling config, and read
Label Studio's JSON export back into the store as labels.

Task format and export format: https://labelstud.io/guide/task_format (a list of tasks, each with
`data` and, in an export, `annotations[].result[]` regions of type `choices`). The replacement
picker uses Label Studio's dynamic choices (`<Choices value="$candidates">`).
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import sqlalchemy as sa

from annotation import queue
from mesed_build import store as st

# Label Studio's choice values <-> our labels
CHOICES = {"R/T E&S": "ES", "R/T S": "S", "IR": "IR"}
NONE_FITS = "none fits"
FITS_SENTENCE_ONLY = "replacement fits the sentence only"
USER_PREFIX = "ls-"

LABELING_CONFIG = f"""<View>
  <Header value="$entity ($class_name)"/>
  <Text name="sentence" value="$sentence"/>
  <View style="display: flex; gap: 1em">
    <Image name="image" value="$image" maxWidth="640px"/>
    <Image name="infobox" value="$infobox" maxWidth="240px"/>
  </View>
  <Choices name="relevance" toName="image" choice="single" required="true" showInline="true">
    <Choice value="{escape('R/T E&S')}" hotkey="1"/>
    <Choice value="R/T S" hotkey="2"/>
    <Choice value="IR" hotkey="3"/>
  </Choices>
  <View visibleWhen="choice-selected" whenTagName="relevance" whenChoiceValue="IR">
    <Header value="Pick a replacement (re-ranked items only)"/>
    <Choices name="replacement" toName="image" value="$candidates" choice="single" showInline="true"/>
    <Choices name="replacement_fit" toName="image" choice="single">
      <Choice value="{FITS_SENTENCE_ONLY}"/>
    </Choices>
  </View>
</View>
"""


class LabelStudioError(ValueError):
    pass


def export_tasks(store: st.Store, out_dir: Path, *, image_url_prefix: str = "/data/local-files/?d=") -> dict[str, int]:
    """Write tasks.json and labeling-config.xml; image URLs are `image_url_prefix` + the content-store path."""
    item = st.annotation_items
    with store.engine.connect() as conn:
        items = conn.execute(sa.select(item).order_by(item.c.position)).mappings().all()
        paths = dict(conn.execute(sa.select(st.images.c.sha256, st.images.c.path)).all())

    def url(sha: str | None) -> str | None:
        return image_url_prefix + paths[sha] if sha in paths else None

    tasks = []
    for row in items:
        view = queue.item_view(store, row)
        before, mention, after = view["sentence"]
        candidates = [{"value": c["image_sha256"], "html": f'<img src="{escape(url(c["image_sha256"]) or "")}" width="140"/>'}
                      for c in view["candidates"]] if row["strategy"] == "rerank" else []
        if candidates:
            candidates.append({"value": NONE_FITS})
        tasks.append({"data": {
            "item_id": row["item_id"], "strategy": row["strategy"], "required": row["required"],
            "sentence": f"{before}[{mention}]{after}" if mention else before,
            "entity": view["entity"], "class_name": row["class_name"] or "",
            "image": url(row["image_sha256"]), "image_sha256": row["image_sha256"],
            "infobox": url(view["infobox_sha256"]), "candidates": candidates,
        }})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tasks.json").write_text(json.dumps(tasks, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "labeling-config.xml").write_text(LABELING_CONFIG, encoding="utf-8")
    return {"tasks": len(tasks)}


def _annotator_name(completed_by: Any) -> str:
    # the JSON export gives a user id; some versions give the user object with an email
    if isinstance(completed_by, dict):
        raw = completed_by.get("email") or completed_by.get("username") or completed_by.get("id")
    else:
        raw = completed_by
    if raw in (None, ""):
        raise LabelStudioError("annotation without completed_by")
    name = USER_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "_", str(raw))
    return name[:64]


def _choice(result: list[dict], from_name: str) -> str | None:
    for region in result:
        if region.get("from_name") == from_name and region.get("type") == "choices":
            choices = (region.get("value") or {}).get("choices") or []
            if choices:
                return choices[0]
    return None


def _user_id(store: st.Store, name: str) -> int:
    """Label Studio annotators become inactive accounts here: they own labels but cannot log in."""
    users = st.annotation_users
    with store.begin() as conn:
        found = conn.execute(sa.select(users.c.user_id).where(users.c.name == name)).scalar_one_or_none()
        if found is not None:
            return int(found)
        return int(conn.execute(users.insert().values(
            name=name, role="annotator", password_hash="!imported-" + secrets.token_hex(8), active=False,
            created_at=st.utcnow())).inserted_primary_key[0])


def import_export(store: st.Store, path: Path) -> dict[str, int]:
    """Read Label Studio's JSON export; returns counts, and records every skipped annotation by reason."""
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LabelStudioError(f"{path}: not a readable Label Studio JSON export ({exc})") from exc
    if not isinstance(tasks, list):
        raise LabelStudioError(f"{path}: expected a JSON list of tasks (Label Studio's 'JSON' export)")
    counts: Counter = Counter()
    drops = []
    for index, task in enumerate(tasks):
        where = f"{path.name}: task {task.get('id', index) if isinstance(task, dict) else index}"
        item_id = ((task.get("data") or {}).get("item_id") if isinstance(task, dict) else None)
        if not item_id:
            drops.append(("annotation", "labelstudio_task_without_item_id", where, None))
            continue
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                drops.append(("annotation", "labelstudio_cancelled", f"{where} annotation {annotation.get('id')}", None))
                continue
            result = annotation.get("result") or []
            relevance = CHOICES.get(_choice(result, "relevance") or "")
            if relevance is None:
                drops.append(("annotation", "labelstudio_no_relevance", f"{where} annotation {annotation.get('id')}", None))
                continue
            replacement = _choice(result, "replacement")
            fit = "S" if _choice(result, "replacement_fit") == FITS_SENTENCE_ONLY else "ES"
            try:
                user_id = _user_id(store, _annotator_name(annotation.get("completed_by")))
                queue.submit_label(
                    store, user_id, item_id, relevance,
                    replacement_sha256=None if replacement in (None, NONE_FITS) or relevance != "IR" else replacement,
                    replacement_label=fit, none_fits=relevance == "IR" and replacement == NONE_FITS, force=True)
            except (queue.QueueError, LabelStudioError) as exc:
                drops.append(("annotation", "labelstudio_invalid", f"{where} annotation {annotation.get('id')}", str(exc)))
                continue
            counts["labels"] += 1
    store.record_drops(drops)
    counts.update(Counter(reason for _, reason, _, _ in drops))
    return {"labels": counts.pop("labels", 0), **dict(sorted(counts.items()))}
