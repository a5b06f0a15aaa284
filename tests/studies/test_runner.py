"""effdet_plugin.studies.runner: a study split over processes (``--shard``) into one results
file."""
import argparse
import multiprocessing

import pytest

from effdet_plugin.studies.runner import Job, ResultsFile, _shard, run_jobs


def _append_many(folder: str, name: str, count: int) -> None:
    results = ResultsFile(folder, 'r.csv', ('name', 'seed'), dict(iters=10))
    for seed in range(count):
        results.append(dict(name=name, seed=seed, ap=0.5))


def test_two_processes_appending_at_once_lose_no_run(tmp_path):
    """Each process holds a stale copy of the file; every append reads the file back under
    the lock, so neither overwrites what the other wrote."""
    context = multiprocessing.get_context('spawn')
    workers = [context.Process(target=_append_many, args=(str(tmp_path), name, 40))
               for name in ('a', 'b')]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    rows = ResultsFile(str(tmp_path), 'r.csv', ('name', 'seed'), dict(iters=10)).rows
    assert sorted((r['name'], int(r['seed'])) for r in rows) == sorted(
        (name, seed) for name in 'ab' for seed in range(40))


def test_shards_split_the_plan_and_each_ends_with_all_finished_runs(tmp_path, capsys):
    jobs = [Job(dict(name=f'run{k}', seed=0), f'run {k}', 5) for k in range(5)]
    first = ResultsFile(str(tmp_path), 'r.csv', ('name', 'seed'), dict(iters=5))
    second = ResultsFile(str(tmp_path), 'r.csv', ('name', 'seed'), dict(iters=5))
    trained = []

    def run(job, bar):
        trained.append(job.key['name'])
        return [dict(job.key, ap=0.1)]

    run_jobs(jobs, first, run, shard=(0, 2))
    assert trained == ['run0', 'run2', 'run4']
    assert 'shard 0/2: 3 of them' in capsys.readouterr().out
    trained.clear()
    run_jobs(jobs, second, run, shard=(1, 2))  # opened before the first shard wrote
    assert trained == ['run1', 'run3']
    assert sorted(r['name'] for r in second.rows) == [f'run{k}' for k in range(5)]
    trained.clear()
    run_jobs(jobs, first, run)  # unsharded: everything is finished
    assert trained == [] and len(first.rows) == 5


@pytest.mark.parametrize('text', ['2/2', '1', 'a/b', '-1/2'])
def test_shard_must_be_an_index_below_the_count(text):
    with pytest.raises(argparse.ArgumentTypeError, match='--shard'):
        _shard(text)


def test_shard_parses():
    assert _shard('1/3') == (1, 3)
