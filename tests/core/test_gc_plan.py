"""gc.plan on its own: which log files a checkpoint frees."""
from fchannel.file import format as F
from fchannel.file.gc import plan
from fchannel.file.log import ANY_FILE, LogFile


def files(*specs):
    """(file_id, dir_index, first_woid, last_woid, closed) -> {id: LogFile}"""
    return {fid: LogFile(fid, di, f"log-{fid}", created_woid=first, last_woid=last,
                         closed=closed, ckpt_position=F.LOG_HEADER_SIZE)
            for fid, di, first, last, closed in specs}


def no_takes(_fid):
    return set()


def test_oldest_closed_unreferenced_covered_files_go():
    fs = files((1, 0, 1, 10, True), (2, 0, 11, 20, True), (3, 0, 21, 30, False))
    assert plan(fs, current={3}, refs={}, woid=30, dir_count=1, take_targets=no_takes) == [1, 2]


def test_a_referenced_file_keeps_itself_and_every_newer_file_of_its_dir():
    fs = files((1, 0, 1, 10, True), (2, 0, 11, 20, True), (3, 0, 21, 30, True),
               (4, 0, 31, 40, False))
    assert plan(fs, {4}, refs={2: 5}, woid=40, dir_count=1, take_targets=no_takes) == [1]


def test_records_after_the_checkpoint_keep_a_file():
    fs = files((1, 0, 1, 10, True), (2, 0, 11, 20, True), (3, 0, 21, 30, False))
    assert plan(fs, {3}, refs={}, woid=15, dir_count=1, take_targets=no_takes) == [1]


def test_a_file_whose_takes_point_into_a_kept_file_stays():
    # dir 0: log-1 (takes of events in log-2), dir 1: log-2 holds a queued event
    fs = files((1, 0, 1, 10, True), (2, 1, 11, 20, True), (3, 0, 21, 30, False),
               (4, 1, 31, 40, False))
    targets = {1: {2}, 2: set()}
    assert plan(fs, {3, 4}, refs={2: 1}, woid=40, dir_count=2,
                take_targets=lambda f: targets.get(f, set())) == []
    # once log-2 is free, both go together
    assert plan(fs, {3, 4}, refs={}, woid=40, dir_count=2,
                take_targets=lambda f: targets.get(f, set())) == [1, 2]


def test_a_damaged_file_may_have_taken_from_any_older_file():
    fs = files((1, 0, 1, 10, True), (2, 1, 5, 20, True), (3, 0, 21, 30, False),
               (4, 1, 31, 40, False))
    targets = {1: {ANY_FILE}, 2: set()}
    # log-2 was created before log-1's last record: log-1 must not go without it
    assert plan(fs, {3, 4}, refs={2: 1}, woid=40, dir_count=2,
                take_targets=lambda f: targets.get(f, set())) == []
