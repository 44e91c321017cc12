from __future__ import annotations

import pytest

from ptt.audio.codec import DEFAULT_BITRATE
from ptt.media.packet import parse_payload
from ptt.media.sender import (
    DEFAULT_REDUNDANCY,
    LOSSY_BITRATE,
    OFFSETS,
    RUN_OFFSETS,
    RUNS_BITRATE,
    START_REDUNDANCY,
    MediaSettings,
    Packetizer,
    RedundancyPolicy,
    offsets_for,
)
from ptt.wire.voice import HEADER_SIZE, VoiceFlags, decode_voice


def frames(n: int) -> list[bytes]:
    return [b"frame%03d" % i for i in range(n)]


def test_headers_count_frames_and_samples() -> None:
    pk = Packetizer(group_id=3, sender=9, burst_id=77, redundancy=0)
    out = [decode_voice(pk.packetize(f, last=i == 4)) for i, f in enumerate(frames(5))]
    headers = [h for h, _ in out]
    assert [h.seq for h in headers] == [0, 1, 2, 3, 4]
    assert [h.timestamp for h in headers] == [0, 320, 640, 960, 1280]
    assert {(h.group_id, h.sender, h.burst_id) for h in headers} == {(3, 9, 77)}
    assert [h.flags for h in headers] == [VoiceFlags.NONE] * 4 + [VoiceFlags.END_OF_BURST]
    assert [parse_payload(p).primary for _, p in out] == frames(5)
    assert pk.ended
    with pytest.raises(ValueError):
        pk.packetize(b"more")


def test_copies_follow_the_offsets_and_start_with_the_burst() -> None:
    pk = Packetizer(1, 2, 3, offsets=(1, 3))
    payloads = [parse_payload(decode_voice(pk.packetize(f))[1]) for f in frames(6)]
    fs = frames(6)
    assert payloads[0].redundancy == ()
    assert payloads[1].redundancy == ((1, fs[0]),)
    assert payloads[2].redundancy == ((1, fs[1]),)  # no frame three back yet
    assert payloads[3].redundancy == ((1, fs[2]), (3, fs[0]))
    assert payloads[5].redundancy == ((1, fs[4]), (3, fs[2]))


def test_redundancy_can_change_mid_burst() -> None:
    pk = Packetizer(1, 2, 3, redundancy=0)
    fs = frames(6)
    sizes = []
    for i, f in enumerate(fs):
        if i == 4:
            pk.redundancy = 3
        sizes.append(len(parse_payload(decode_voice(pk.packetize(f))[1]).redundancy))
    assert sizes == [0, 0, 0, 0, 3, 3]
    assert pk.offsets == OFFSETS[3]


def test_sequence_and_timestamp_wrap() -> None:
    pk = Packetizer(1, 2, 3, redundancy=0)
    pk.seq, pk.timestamp = 65535, 0xFFFFFFFF - 100
    h1, _ = decode_voice(pk.packetize(b"a"))
    h2, _ = decode_voice(pk.packetize(b"b"))
    assert (h1.seq, h2.seq) == (65535, 0)
    assert h2.timestamp == (0xFFFFFFFF - 100 + 320) & 0xFFFFFFFF


def test_bytes_sent_counts_whole_datagrams() -> None:
    pk = Packetizer(1, 2, 3, redundancy=1)
    d1 = pk.packetize(b"x" * 60)
    d2 = pk.packetize(b"y" * 60)
    assert len(d1) == HEADER_SIZE + 1 + 60
    assert len(d2) == HEADER_SIZE + 1 + 1 + 60 + 60
    assert pk.bytes_sent == len(d1) + len(d2)


def test_bad_redundancy_settings() -> None:
    with pytest.raises(ValueError):
        Packetizer(1, 2, 3, offsets=(2, 1))
    with pytest.raises(ValueError):
        Packetizer(1, 2, 3, offsets=(9,))
    with pytest.raises(ValueError):
        offsets_for(17)
    assert len(offsets_for(DEFAULT_REDUNDANCY)) == DEFAULT_REDUNDANCY


def test_policy_clean_path_sends_bare_frames() -> None:
    policy = RedundancyPolicy()
    for _ in range(5):
        settings = policy.update(0.0)
    assert settings.redundancy == 0


def test_policy_rises_at_once_and_falls_slowly() -> None:
    policy = RedundancyPolicy(hold=3)
    assert policy.update(0.0).redundancy == 0
    heavy = policy.update(0.30)
    assert heavy.redundancy == 3
    # calm reports: one step down only after `hold` of them, one step at a time
    steps = [policy.update(0.0).redundancy for _ in range(9)]
    assert steps == [3, 3, 2, 2, 2, 1, 1, 1, 0]


def test_policy_depth_grows_with_loss() -> None:
    depths = []
    for loss in (0.0, 0.01, 0.05, 0.10, 0.20, 0.30):
        policy = RedundancyPolicy()
        depths.append(policy.update(loss).redundancy)
    assert depths == sorted(depths)
    assert depths[0] == 0 and depths[-1] >= 2


def test_policy_loss_near_a_threshold_does_not_flap() -> None:
    policy = RedundancyPolicy(hold=2)
    threshold = RedundancyPolicy.STEPS[2][0]
    k = policy.update(threshold).redundancy
    for loss in [threshold * 0.9, threshold * 1.01, threshold * 0.8] * 5:
        assert policy.update(loss).redundancy == k


def test_policy_start_and_settings() -> None:
    policy = RedundancyPolicy()
    policy.start(DEFAULT_REDUNDANCY)
    assert policy.settings.redundancy == DEFAULT_REDUNDANCY
    assert isinstance(policy.settings, MediaSettings)
    assert policy.settings.offsets == offsets_for(DEFAULT_REDUNDANCY)


def test_policy_start_is_a_guess_a_lossy_or_the_second_report_replaces() -> None:
    # a first report without loss (~20 frames: on a bursty path often between two runs) keeps
    # the start; the second takes it down to one copy at once, and both count as calm
    # reports: bare frames as soon as from a start of one copy (three reports in)
    policy = RedundancyPolicy(hold=3)
    policy.start(START_REDUNDANCY)
    assert policy.settings.redundancy == START_REDUNDANCY == 2
    assert [policy.update(0.0).redundancy for _ in range(4)] == [2, 1, 0, 0]
    # a first report with a little loss (below the two-copy step) replaces it at once, as ever
    policy = RedundancyPolicy(hold=3)
    policy.start(START_REDUNDANCY)
    assert policy.update(0.01).redundancy == 1
    # the start kept through a clean first report still yields to a lossy second one
    policy = RedundancyPolicy(hold=3)
    policy.start(START_REDUNDANCY)
    assert policy.update(0.0).redundancy == 2
    settings = policy.update(0.12, mean_loss_run=3.0)
    assert settings.redundancy == 3 and settings.runs
    # once a report has confirmed a depth, it falls one step per `hold` calm reports again
    policy = RedundancyPolicy(hold=3)
    policy.start(START_REDUNDANCY)
    assert policy.update(0.05).redundancy == 2
    assert [policy.update(0.0).redundancy for _ in range(4)] == [2, 2, 2, 1]  # smoothed
    # a lossy first report raises it as ever
    policy = RedundancyPolicy(hold=3)
    policy.start(START_REDUNDANCY)
    assert policy.update(0.20).redundancy == 3


def test_policy_bursty_losses_get_one_more_copy() -> None:
    random_path, bursty_path = RedundancyPolicy(), RedundancyPolicy()
    for _ in range(5):
        k_random = random_path.update(0.10, mean_loss_run=1.1).redundancy
        k_bursty = bursty_path.update(0.10, mean_loss_run=3.0).redundancy
    assert (k_random, k_bursty) == (2, 3)


def test_policy_smooths_noisy_reports() -> None:
    # one-second reports of 10 % random loss swing between 4 and 16 %: stay at two copies
    policy = RedundancyPolicy()
    reports = [0.10, 0.16, 0.04, 0.12, 0.16, 0.08, 0.14, 0.06, 0.10, 0.16] * 3
    depths = {policy.update(loss, 1.1).redundancy for loss in reports}
    assert depths == {2}


def test_policy_spreads_offsets_when_losses_come_in_runs_and_gathers_them_again() -> None:
    policy = RedundancyPolicy()
    assert policy.update(0.02, mean_loss_run=2.5).offsets == RUN_OFFSETS[2]  # 1 copy + 1: runs
    assert policy.settings.runs
    for _ in range(6):  # the same loss, isolated now: back to adjacent offsets
        settings = policy.update(0.02, mean_loss_run=1.0)
    assert not settings.runs and settings.offsets == OFFSETS[1]


def test_policy_one_chance_run_is_taken_back_repeated_runs_are_not() -> None:
    # 5 % random loss: the half-second first report held one run of three lost frames. It is
    # taken at its word (a bursty path needs the spread copies from the start) ...
    policy = RedundancyPolicy()
    policy.start(START_REDUNDANCY)
    assert policy.update(0.125, mean_loss_run=3.0).runs
    # ... until the next report shows isolated losses: adjacent offsets again at once
    settings = policy.update(0.05, mean_loss_run=1.0)
    assert not settings.runs and settings.offsets == OFFSETS[settings.redundancy]
    # after that, a single chance run does not spread the copies; a repeated one does
    assert not policy.update(0.08, mean_loss_run=3.0).runs
    for _ in range(4):
        assert not policy.update(0.05, mean_loss_run=1.0).runs
    assert not policy.update(0.10, mean_loss_run=3.0).runs
    assert policy.update(0.10, mean_loss_run=2.5).runs
    # a lone loss is no evidence against runs
    lone = RedundancyPolicy()
    lone.update(0.10, mean_loss_run=3.0)
    assert lone.update(0.02, mean_loss_run=1.0).runs
    # once two reports have shown runs, one report of isolated losses does not undo the call
    bursty = RedundancyPolicy()
    bursty.start(START_REDUNDANCY)
    bursty.update(0.12, mean_loss_run=3.0)
    bursty.update(0.08, mean_loss_run=2.0)
    settings = bursty.update(0.10, mean_loss_run=1.0)
    assert settings.runs and settings.offsets == RUN_OFFSETS[3]


def test_policy_noisy_run_lengths_do_not_flip_the_offsets() -> None:
    policy = RedundancyPolicy()
    policy.update(0.10, mean_loss_run=2.5)
    policy.update(0.10, mean_loss_run=2.5)  # two reports: the runs are no chance
    runs = {policy.update(0.10, r).runs for r in [1.2, 2.0, 1.4, 1.8, 1.3, 2.2] * 3}
    assert runs == {True}


def test_copies_against_runs_reach_past_a_run_of_five() -> None:
    # a copy at offset o survives when fewer than o packets after its frame's are lost: runs of
    # mean 3 (geometric) are often 5 long, and the three copies reach past them
    policy = RedundancyPolicy()
    for _ in range(3):
        settings = policy.update(0.10, mean_loss_run=3.0)
    assert settings.runs and settings.redundancy == 3
    assert max(settings.offsets) >= 6 and min(settings.offsets) >= 2
    assert max(RUN_OFFSETS[2]) >= 5
    for k in (1, 2, 3):  # spread copies never reach less far than adjacent ones
        assert max(RUN_OFFSETS[k]) >= max(OFFSETS[k])


def test_heavy_loss_lowers_the_bitrate_and_lighter_loss_restores_it() -> None:
    policy = RedundancyPolicy()
    assert policy.settings.max_bitrate is None
    settings = policy.update(0.20, mean_loss_run=1.2)
    assert settings.redundancy == 3 and settings.offsets == OFFSETS[3]
    assert settings.max_bitrate == LOSSY_BITRATE
    assert settings.bitrate(DEFAULT_BITRATE) == LOSSY_BITRATE and settings.bitrate(16_000) == 16_000
    for loss in (0.16, 0.14, 0.13, 0.16):  # hysteresis: noisy reports around 15 % keep it low
        assert policy.update(loss, 1.2).max_bitrate == LOSSY_BITRATE
    for _ in range(4):
        settings = policy.update(0.05, 1.2)
    assert settings.max_bitrate is None and settings.bitrate(DEFAULT_BITRATE) == DEFAULT_BITRATE
    # bursty loss of 10 % on average gets three copies, at the configured rate
    bursty = RedundancyPolicy()
    for _ in range(5):
        settings = bursty.update(0.10, mean_loss_run=3.0)
    assert settings.redundancy == 3 and settings.max_bitrate is None
    assert bursty.update(0.25, mean_loss_run=3.0).max_bitrate is None


def test_losses_in_runs_raise_the_bitrate_and_random_losses_never_do() -> None:
    # runs longer than the copies' reach are concealed in part whatever the copies: the voice
    # itself gets the bits, Opus at RUNS_BITRATE or the configured rate if that is more
    bursty = RedundancyPolicy()
    bursty.start(START_REDUNDANCY)
    settings = bursty.update(0.10, mean_loss_run=3.0)
    # one report of runs spreads the copies at once; the rate waits for a second one
    assert settings.runs and settings.min_bitrate is None
    settings = bursty.update(0.10, mean_loss_run=2.5)
    assert settings.runs and settings.min_bitrate == RUNS_BITRATE
    assert settings.bitrate(DEFAULT_BITRATE) == RUNS_BITRATE and settings.bitrate(64_000) == 64_000
    assert RUNS_BITRATE > DEFAULT_BITRATE
    for _ in range(4):  # heavy loss in runs keeps it: the lower heavy-loss rate is for random
        settings = bursty.update(0.25, mean_loss_run=4.0)
    assert settings.bitrate(DEFAULT_BITRATE) == RUNS_BITRATE and settings.max_bitrate is None
    for _ in range(4):  # the same loss, isolated now (smoothed): the configured rate again
        settings = bursty.update(0.10, mean_loss_run=1.0)
    assert not settings.runs and settings.min_bitrate is None
    assert settings.bitrate(DEFAULT_BITRATE) == DEFAULT_BITRATE
    # random loss reports runs of 1.0-1.3 frames: never the raised rate, at any loss
    for loss in (0.05, 0.10, 0.20):
        policy = RedundancyPolicy()
        policy.start(START_REDUNDANCY)
        rates = {policy.update(loss, run).bitrate(DEFAULT_BITRATE)
                 for run in [1.1, 1.25, 1.0, 1.3, 1.15] * 4}
        assert RUNS_BITRATE not in rates
    # one chance run at heavy random loss, taken back by the next report: never the raised rate
    chance = RedundancyPolicy()
    chance.start(START_REDUNDANCY)
    assert chance.update(0.20, 1.2).bitrate(DEFAULT_BITRATE) == LOSSY_BITRATE
    settings = chance.update(0.22, 3.0)
    assert settings.runs and settings.bitrate(DEFAULT_BITRATE) < RUNS_BITRATE
    assert chance.update(0.20, 1.1).bitrate(DEFAULT_BITRATE) == LOSSY_BITRATE
    # nothing lost: no copies, the configured rate
    clean = RedundancyPolicy()
    clean.start(START_REDUNDANCY)
    settings = [clean.update(0.0, 0.0) for _ in range(5)][-1]
    assert settings.redundancy == 0 and settings.bitrate(DEFAULT_BITRATE) == DEFAULT_BITRATE
