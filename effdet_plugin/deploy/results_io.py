"""Results of ``tools/infer.py`` on disk: one JSON line per image, written and flushed as it
comes (``detections.jsonl``), and the files built from those lines at the end
(``detections.json``, ``semantic_pixels.json``, a COCO-results JSON).

Nothing here holds all results in memory: the final files are written while the JSON lines are
read again, one at a time. The lines are what ``--resume`` reads back.
"""
import json
import os
import os.path as osp
import sys
from typing import Dict, Iterator, List, Optional, Sequence, Set

import numpy as np

JSONL = 'detections.jsonl'
DETECTIONS = 'detections.json'
SEMANTIC = 'semantic_pixels.json'
COCO_RESULTS = 'coco_results.json'


class JsonLinesWriter:
    """Appends one record per line to ``path`` and flushes it, so that a run killed at any
    moment leaves every finished image on disk (at worst the last line cut short).

    Args:
        path (str): The ``.jsonl`` file.
        append (bool): Keep the lines already there (``--resume``); else start it empty.
            Defaults to False.
    """

    def __init__(self, path: str, append: bool = False) -> None:
        self.file = open(path, 'a' if append else 'w')

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record, separators=(',', ':')) + '\n')
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_records(path: str) -> Iterator[dict]:
    """The records of a JSON-lines file, in order; a last line cut short is left out."""
    with open(path, 'rb') as f:
        for line in f:
            if not line.endswith(b'\n'):
                return
            yield json.loads(line)


def finished_files(path: str) -> Set[str]:
    """Inputs already in the results ``path`` (for ``--resume``).

    A last line cut short by a killed run is removed from the file, so that its image is done
    again and appended as a whole line. A broken line before the last one is not left by a kill:
    it stops with an error.
    """
    if not osp.isfile(path):
        return set()
    done, good_end, broken = set(), 0, None
    with open(path, 'rb') as f:
        for line_no, line in enumerate(f, 1):
            if broken is not None:
                raise ValueError(
                    f'{path}: line {broken} is not a JSON record, and it is not the last line '
                    '(a killed run leaves only the last one short): delete the file to start '
                    'over, or run without --resume')
            try:
                record = json.loads(line) if line.endswith(b'\n') else None
            except ValueError:
                record = None
            if record is None:
                broken = line_no
                continue
            done.add(record['file'])
            good_end += len(line)
    if good_end < os.path.getsize(path):
        with open(path, 'r+b') as f:
            f.truncate(good_end)
    return done


def detections_to_json(result, classes) -> list:
    """Detections of one image as JSON-ready dicts (none for semantic-only models)."""
    if 'pred_instances' not in result:
        return []
    inst = result.pred_instances.cpu().numpy()
    return [
        dict(bbox=[round(float(v), 2) for v in box], score=round(float(score), 4),
             label=int(label), class_name=classes[int(label)] if classes else str(int(label)))
        for box, score, label in zip(inst.bboxes, inst.scores, inst.labels)
    ]


def semantic_pixels(result) -> Optional[dict]:
    """Pixel count per predicted semantic class id, or None without a semantic head."""
    if 'pred_sem_seg' not in result:
        return None
    labels, counts = np.unique(result.pred_sem_seg.sem_seg.cpu().numpy(), return_counts=True)
    return {str(int(k)): int(n) for k, n in zip(labels, counts)}


def result_record(path: str, result, classes: Sequence[str]) -> dict:
    """The JSON line of one image: ``file``, ``detections`` and, for a semantic head,
    ``semantic_pixels``."""
    record = dict(file=path, detections=detections_to_json(result, classes))
    pixels = semantic_pixels(result)
    if pixels is not None:
        record['semantic_pixels'] = pixels
    return record


def ann_image_ids(ann_file: str, files: Sequence[str]) -> Dict[str, int]:
    """``image_id`` of each input in the COCO annotation file ``ann_file``, matched by file
    name: an entry's ``file_name`` (``k.png`` or ``sub/k.png``) is the end of the input's path,
    or else has the input's base name, which no other entry has.

    Raises:
        ValueError: An input matches no entry, or two inputs match the same one.
    """
    with open(ann_file) as f:
        images = json.load(f).get('images') or []
    by_name = {osp.normpath(img['file_name']).replace(os.sep, '/'): img['id'] for img in images}
    depth = max((name.count('/') + 1 for name in by_name), default=1)
    # an entry's base name alone when no other entry shares it ('sub/k.png' for '/x/k.png')
    by_base: Dict[str, Optional[int]] = {}
    for name, image_id in by_name.items():
        base = name.rsplit('/', 1)[-1]
        by_base[base] = None if base in by_base else image_id
    ids, unmatched = {}, []
    for path in files:
        parts = osp.abspath(path).replace(os.sep, '/').split('/')
        # the longest tail that names an entry (sub/k.png before k.png)
        tails = ('/'.join(parts[-k:]) for k in range(min(depth, len(parts)), 0, -1))
        image_id = next((by_name[t] for t in tails if t in by_name), by_base.get(parts[-1]))
        if image_id is None:
            unmatched.append(path)
        else:
            ids[path] = image_id
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} of {len(files)} input(s) are not images of '{ann_file}' (by "
            f"file_name), e.g. '{unmatched[0]}': pass the images of that annotation file, or "
            'leave out --ann')
    if len(set(ids.values())) < len(ids):
        raise ValueError(f"two inputs have the same file_name in '{ann_file}': pass one "
                         'folder of its images')
    return ids


def ann_category_ids(ann_file: str, classes: Sequence[str]) -> List[int]:
    """COCO ``category_id`` of each class index, matched by name (as mmdet's ``CocoMetric``
    does); a model without class names takes the categories in the file's order."""
    with open(ann_file) as f:
        categories = json.load(f).get('categories') or []
    if not classes:
        return [c['id'] for c in categories]
    by_name = {c['name']: c['id'] for c in categories}
    missing = [c for c in classes if c not in by_name]
    if missing:
        raise ValueError(f"class(es) {missing} are not categories of '{ann_file}' "
                         f"({sorted(by_name)}): pass the annotation file the model was trained "
                         'for, or --classes')
    return [by_name[c] for c in classes]


def coco_ids(files: List[str], ann: Optional[str], given: bool, classes) -> tuple:
    """``image_id`` per input and ``category_id`` per class of the COCO results: those of
    ``ann`` (checked strictly when the user ``given`` it), else positions and class indices."""
    if not ann:
        return {f: i for i, f in enumerate(files)}, None
    if not osp.isfile(ann):
        raise FileNotFoundError(f"annotation file '{ann}' does not exist: pass the COCO json "
                                'of the images to --ann, or leave it out')
    try:
        return ann_image_ids(ann, files), ann_category_ids(ann, classes)
    except ValueError as e:
        if given:
            raise
        print(f'warning: coco_results.json numbers images and classes by position ({e})',
              file=sys.stderr)
        return {f: i for i, f in enumerate(files)}, None


def write_final_files(out_dir: str, image_ids: Dict[str, int],
                      category_ids: Optional[Sequence[int]] = None) -> Dict[str, int]:
    """Build ``detections.json`` (input path -> detections, as before streaming existed),
    ``semantic_pixels.json`` (when a record has pixels) and the COCO results from the JSON
    lines in ``out_dir``, one record at a time.

    Args:
        out_dir (str): The folder holding ``detections.jsonl``.
        image_ids (dict): ``image_id`` of each input path.
        category_ids (Sequence[int], optional): ``category_id`` per class index; None uses
            the index itself. Defaults to None.

    Returns:
        dict: ``images`` and ``detections`` written. Records of files that are not in
        ``image_ids`` (another run's inputs) are left out, an input twice is written once.
    """
    seen: Set[str] = set()
    counts = dict(images=0, detections=0)
    semantic_path = osp.join(out_dir, SEMANTIC)
    with open(osp.join(out_dir, DETECTIONS), 'w') as det, \
            open(osp.join(out_dir, COCO_RESULTS), 'w') as coco:
        det.write('{')
        coco.write('[')
        semantic = None
        for record in read_records(osp.join(out_dir, JSONL)):
            path = record['file']
            if path in seen or path not in image_ids:  # twice, or not an input of this run
                continue
            seen.add(path)
            counts['images'] += 1
            det.write(('\n' if counts['images'] == 1 else ',\n')
                      + f'{json.dumps(path)}: {json.dumps(record["detections"])}')
            for d in record['detections']:
                x1, y1, x2, y2 = d['bbox']
                label = d['label']
                row = dict(image_id=image_ids[path],
                           category_id=category_ids[label] if category_ids else label,
                           bbox=[x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                           score=d['score'])
                coco.write(('\n' if counts['detections'] == 0 else ',\n') + json.dumps(row))
                counts['detections'] += 1
            if 'semantic_pixels' in record:
                if semantic is None:
                    semantic = open(semantic_path, 'w')
                    semantic.write('{')
                else:
                    semantic.write(',')
                semantic.write(f'\n{json.dumps(path)}: {json.dumps(record["semantic_pixels"])}')
        det.write('\n}\n')
        coco.write('\n]\n')
        if semantic is not None:
            semantic.write('\n}\n')
            semantic.close()
    return counts
