"""Meshes and collectives (cost_models.topology), against hand-derived numbers.

Hardware numbers come from ``cost_models/catalog/hardware.yaml``:

- tpu-v4: 3D torus, 45e9 B/s per link one way, hop latency 1e-6 s, wraparound on full 4-blocks;
- tpu-v5e: 2D torus, 50e9 B/s per link, hop latency 1e-6 s, wraparound on full 16-axes;
- a100-80gb: 8-GPU NVLink domain at 300e9 B/s, 25e9 B/s InfiniBand between nodes, latency
  2e-6 s per domain step and 5e-6 s per network step;
- l4: no NVLink (domain of 1), 32e9 B/s PCIe, 5e-6 s per network step.

Collective model (Pope et al. appendix A, module docstring): an all-gather of D bytes per chip over a
group of K chips costs D (K-1)/K / bandwidth plus a latency term; a reduce-scatter the same; an
all-reduce twice that. Every expected value below is worked out in its comment, never computed
with the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.topology import (
    AXIS_INDEX,
    SwitchedNetwork,
    TorusNetwork,
    group_size,
    network_for,
    parse_mesh,
    switched_groups,
)

REL = 1e-9

V4_LINK = 45.0e9
V4_HOP = 1.0e-6
V5E_LINK = 50.0e9
A100_DOMAIN_BW = 300.0e9
A100_NET_BW = 25.0e9
A100_DOMAIN_LAT = 2.0e-6
A100_NET_LAT = 5.0e-6


def time_of(network, kind: str, d: float, mesh: tuple[int, int, int], axes: str) -> float:
    result = network.collective_time_s(kind, np.array([float(d)]), np.array([mesh], dtype=np.float64), axes)
    assert result.shape == (1,)
    return float(result[0])


@pytest.fixture
def v4() -> TorusNetwork:
    network = network_for(get_hardware("tpu-v4"))
    assert isinstance(network, TorusNetwork)
    return network


@pytest.fixture
def a100() -> SwitchedNetwork:
    network = network_for(get_hardware("a100-80gb"))
    assert isinstance(network, SwitchedNetwork)
    return network


# --- torus (TPU v4) ------------------------------------------------------------------------------


def test_network_for_picks_the_interconnect_kind():
    for name in ("tpu-v4", "tpu-v5e", "tpu-v5p"):
        assert isinstance(network_for(get_hardware(name)), TorusNetwork)
    for name in ("a100-40gb", "a100-80gb", "h100-sxm", "h200", "a6000", "l4", "xeon-gold-6242"):
        assert isinstance(network_for(get_hardware(name)), SwitchedNetwork)


def test_torus_all_gather_one_axis_of_4x4x4(v4):
    # 4x4x4 is a full cube: every axis a ring with wraparound, 2 links x 45e9 = 90e9 B/s per axis.
    # K = 4 chips on axis x: bytes term D (3/4) / 90e9. D = 1e9 -> 0.75e9 / 90e9 = 8.3333...e-3 s.
    # Latency: a bidirectional ring of 4 takes 4/2 = 2 hop steps -> 2e-6 s.
    expected = 1e9 * 3 / 4 / 90e9 + 2 * V4_HOP
    assert expected == pytest.approx(8.335333333e-3, rel=1e-9)
    assert time_of(v4, "all_gather", 1e9, (4, 4, 4), "x") == pytest.approx(expected, rel=REL)
    # The same on y or z (all axes alike in a cube).
    assert time_of(v4, "all_gather", 1e9, (4, 4, 4), "y") == pytest.approx(expected, rel=REL)
    assert time_of(v4, "all_gather", 1e9, (4, 4, 4), "z") == pytest.approx(expected, rel=REL)


def test_torus_all_gather_all_axes_of_4x4x4_is_270_gb_per_s(v4):
    # Three axes at once: 6 links x 45e9 = 270e9 B/s (the paper's "270 GB/s interconnect").
    # K = 64: bytes term D (63/64) / 270e9. D = 1e9 -> 3.645833...e-3 s.
    # Latency: 3 rings of 4, 2 steps each -> 6 steps -> 6e-6 s.
    expected = 1e9 * 63 / 64 / 270e9 + 6 * V4_HOP
    assert expected == pytest.approx(3.651833333e-3, rel=1e-9)
    assert time_of(v4, "all_gather", 1e9, (4, 4, 4), "xyz") == pytest.approx(expected, rel=REL)
    # Bandwidth check without the latency: a large message approaches D (63/64) / 270e9.
    big = time_of(v4, "all_gather", 1e13, (4, 4, 4), "xyz")
    assert big == pytest.approx(1e13 * 63 / 64 / 270e9, rel=1e-6)


def test_torus_two_axes_of_4x4x4(v4):
    # yz: 4 links = 180e9 B/s, K = 16, 2 rings of 4 -> 4 steps. D = 2e8:
    # 2e8 x 15/16 / 180e9 = 1.0416666e-3 s, + 4e-6 s.
    expected = 2e8 * 15 / 16 / 180e9 + 4 * V4_HOP
    assert time_of(v4, "all_gather", 2e8, (4, 4, 4), "yz") == pytest.approx(expected, rel=REL)


def test_torus_reduce_scatter_equals_all_gather_and_all_reduce_is_twice(v4):
    for axes in ("x", "yz", "xyz"):
        gather = time_of(v4, "all_gather", 3e7, (4, 4, 4), axes)
        assert time_of(v4, "reduce_scatter", 3e7, (4, 4, 4), axes) == pytest.approx(gather, rel=REL)
        assert time_of(v4, "all_reduce", 3e7, (4, 4, 4), axes) == pytest.approx(2 * gather, rel=REL)
    # Hand value: all-reduce over xyz of D = 1e9: 2 x (1e9 x 63/64 / 270e9 + 6e-6) = 7.303666...e-3.
    assert time_of(v4, "all_reduce", 1e9, (4, 4, 4), "xyz") == pytest.approx(
        2 * (1e9 * 63 / 64 / 270e9 + 6e-6), rel=REL
    )


def test_torus_2x2x2_has_no_wraparound(v4):
    # 2x2x2 is not made of full 4-blocks: lines, 1 link (45e9 B/s) per axis, K-1 steps per axis.
    # One axis: K = 2 -> D (1/2) / 45e9 + 1 step. D = 9e8 -> 4.5e8 / 45e9 = 1e-2 s, + 1e-6 s.
    assert time_of(v4, "all_gather", 9e8, (2, 2, 2), "x") == pytest.approx(1e-2 + 1e-6, rel=REL)
    # All axes: 3 links = 135e9 B/s, K = 8 -> D (7/8) / 135e9 + 3 steps.
    # D = 1.35e9 -> 1.18125e9 / 135e9 = 8.75e-3 s, + 3e-6 s.
    assert time_of(v4, "all_gather", 1.35e9, (2, 2, 2), "xyz") == pytest.approx(8.75e-3 + 3e-6, rel=REL)
    assert time_of(v4, "all_reduce", 1.35e9, (2, 2, 2), "xyz") == pytest.approx(2 * (8.75e-3 + 3e-6), rel=REL)


def test_torus_2x4x4_has_no_wraparound_and_one_link_per_axis(v4):
    # The axis of 2 keeps 2x4x4 from being whole cubes: no wraparound anywhere, 1 link per axis.
    # Axis y (length 4): K = 4, 45e9 B/s, a line of 4 -> 3 steps. D = 4.5e8:
    # 4.5e8 x 3/4 / 45e9 = 7.5e-3 s, + 3e-6 s.
    assert time_of(v4, "all_gather", 4.5e8, (2, 4, 4), "y") == pytest.approx(7.5e-3 + 3e-6, rel=REL)


def test_torus_trivial_collectives_are_free(v4):
    # One chip in the group (axis z of 2x2x1, or no axes at all), or nothing to move: 0 s.
    assert time_of(v4, "all_gather", 1e9, (2, 2, 1), "z") == 0.0
    assert time_of(v4, "all_reduce", 1e9, (2, 2, 1), "z") == 0.0
    assert time_of(v4, "all_gather", 1e9, (1, 1, 1), "xyz") == 0.0
    assert time_of(v4, "all_gather", 0.0, (4, 4, 4), "xyz") == 0.0
    assert time_of(v4, "all_reduce", 0.0, (4, 4, 4), "x") == 0.0
    assert time_of(v4, "all_to_all", 0.0, (4, 4, 4), "xyz") == 0.0


def test_torus_is_vectorized_per_configuration(v4):
    meshes = np.array([[4, 4, 4], [2, 2, 2], [2, 2, 1]], dtype=np.float64)
    d = np.array([1e9, 1.35e9, 1e9])
    got = v4.collective_time_s("all_gather", d, meshes, "xyz")
    # Rows as in the tests above: cube (6 links, 6 steps), 2x2x2 (3 links, 3 steps),
    # 2x2x1: flat 2x2, lines of 2 on x and y: 2 links = 90e9, K = 4 -> 1e9 x 3/4 / 90e9 + 2 steps.
    expected = [1e9 * 63 / 64 / 270e9 + 6e-6, 8.75e-3 + 3e-6, 1e9 * 3 / 4 / 90e9 + 2e-6]
    np.testing.assert_allclose(got, expected, rtol=REL)


def test_torus_many_rows_of_few_meshes_match_the_hand_numbers(v4):
    # 6,000 rows of three meshes: over distinct.MIN_ROWS, so the mesh-only terms are computed once
    # per distinct mesh and gathered back (topology.mesh_classes); each row must still be its own
    # mesh's hand-derived time (the rows of test_torus_is_vectorized_per_configuration), and a
    # second call on the same array changed in place must follow the new meshes.
    meshes = np.tile(np.array([[4, 4, 4], [2, 2, 2], [2, 2, 1]], dtype=np.float64), (2000, 1))
    d = np.tile(np.array([1e9, 1.35e9, 1e9]), 2000)
    expected = np.tile([1e9 * 63 / 64 / 270e9 + 6e-6, 8.75e-3 + 3e-6, 1e9 * 3 / 4 / 90e9 + 2e-6], 2000)
    np.testing.assert_allclose(v4.collective_time_s("all_gather", d, meshes, "xyz"), expected, rtol=REL)
    # Reduce-scatter runs the all-gather's steps; an all-reduce is both.
    np.testing.assert_allclose(v4.collective_time_s("reduce_scatter", d, meshes, "xyz"), expected, rtol=REL)
    np.testing.assert_allclose(v4.collective_time_s("all_reduce", d, meshes, "xyz"), 2 * expected, rtol=REL)
    meshes[::3] = (2, 2, 2)  # every cube row becomes a 2x2x2: 1e9 x 7/8 / 135e9 + 3 steps
    expected[::3] = 1e9 * 7 / 8 / 135e9 + 3e-6
    np.testing.assert_allclose(v4.collective_time_s("all_gather", d, meshes, "xyz"), expected, rtol=REL)


def test_torus_result_follows_a_mesh_array_changed_in_place(v4):
    # A caller that reuses one mesh array for several configurations gets the new mesh's cost.
    mesh = np.array([[4, 4, 4]], dtype=np.float64)
    d = np.array([1e9])
    first = v4.collective_time_s("all_gather", d, mesh, "xyz")
    assert first[0] == pytest.approx(1e9 * 63 / 64 / 270e9 + 6e-6, rel=REL)
    mesh[0] = (2, 2, 2)
    second = v4.collective_time_s("all_gather", np.array([1.35e9]), mesh, "xyz")
    # 2x2x2 as above: 1.35e9 x 7/8 / 135e9 + 3 steps.
    assert second[0] == pytest.approx(8.75e-3 + 3e-6, rel=REL)


def test_torus_axis_of_length_one_adds_no_latency_in_a_wrapped_2d_slice():
    # tpu-v5e 16x16 (a full pod, mesh 16x16x1): both long axes wrap, 2 links x 50e9 each,
    # 4 links = 200e9 B/s; z has length 1: no links and no ring, hence no steps.
    # Over 'xyz' (a 1D weight-stationary layout): K = 256, steps 16/2 + 16/2 + 0 = 16.
    # D = 2e6 -> 2e6 x 255/256 / 200e9 = 9.9609375e-6 s, + 16e-6 s = 2.59609375e-5 s.
    network = network_for(get_hardware("tpu-v5e"))
    expected = 2e6 * 255 / 256 / (4 * V5E_LINK) + 16 * V4_HOP
    assert expected == pytest.approx(2.59609375e-5, rel=1e-12)
    # Over 'xy' the same group and links: the two must agree.
    assert time_of(network, "all_gather", 2e6, (16, 16, 1), "xy") == pytest.approx(expected, rel=REL)
    assert time_of(network, "all_gather", 2e6, (16, 16, 1), "xyz") == pytest.approx(expected, rel=REL)


def test_torus_collective_steps_are_one_ring_per_axis(v4):
    # A calibration profile's collective_step_s is charged per synchronized step: on a torus one
    # ring per axis, one axis after another, K_a - 1 steps each (no bidirectional halving, no
    # wraparound discount: a step is a neighbour's wait whatever the links).
    meshes = np.array([(4, 4, 4), (4, 8, 8), (2, 2, 1)], dtype=np.float64)
    # 'yz': 3 + 3 = 6 on 4x4x4; 7 + 7 = 14 on 4x8x8; 1 + 0 = 1 on 2x2x1 (z has length 1).
    assert v4.collective_steps("all_gather", meshes, "yz").tolist() == [6.0, 14.0, 1.0]
    assert v4.collective_steps("reduce_scatter", meshes, "yz").tolist() == [6.0, 14.0, 1.0]
    # An all-reduce is a reduce-scatter then an all-gather: 12, 28, 2.
    assert v4.collective_steps("all_reduce", meshes, "yz").tolist() == [12.0, 28.0, 2.0]
    # 'xyz': 9 on 4x4x4, 3 + 7 + 7 = 17 on 4x8x8, 2 on 2x2x1; the all-to-all the same.
    assert v4.collective_steps("all_to_all", meshes, "xyz").tolist() == [9.0, 17.0, 2.0]


def test_switched_collective_steps_are_one_ring_over_the_group(a100):
    # The default: one ring over the whole group, K - 1 steps (16 GPUs over 'yz' of 1x2x8: 15).
    assert a100.collective_steps("all_gather", np.array([(1, 2, 8)], dtype=np.float64), "yz").tolist() == [15.0]
    assert a100.collective_steps("all_reduce", np.array([(1, 2, 8)], dtype=np.float64), "z").tolist() == [14.0]


# --- legal meshes ----------------------------------------------------------------------------------


def test_tpu_v4_64_chips_includes_the_cube_and_permutations(v4):
    legal = v4.legal_meshes(64)
    assert (4, 4, 4) in legal
    # 2x4x8 is a 64-chip v4 slice (axes 2, 4, 8 each 1, 2 or a multiple of 4); every order of the
    # physical axes on the logical X, Y, Z is allowed.
    for mesh in ((2, 4, 8), (2, 8, 4), (4, 2, 8), (4, 8, 2), (8, 2, 4), (8, 4, 2)):
        assert mesh in legal, mesh
    assert len(legal) == len(set(legal))
    for mesh in legal:
        assert int(np.prod(mesh)) == 64
        assert all(a in (1, 2) or a % 4 == 0 for a in mesh), mesh
        assert max(mesh) <= 16, mesh  # a v4 pod is 16x16x16
    # Flat 64-chip meshes are not v4 slices.
    assert (1, 8, 8) not in legal
    assert (1, 1, 64) not in legal


def test_tpu_v4_chip_counts_without_a_mesh(v4):
    # 3: no axis can be 3. 12: 12 = 2x2x3 or 1x3x4 need a 3; 1x1x12 and 1x2x6 are flat/illegal.
    assert v4.legal_meshes(3) == []
    assert v4.legal_meshes(12) == []
    assert v4.legal_meshes(0) == []
    assert v4.legal_meshes(8192) == []  # beyond a 4096-chip pod


def test_tpu_v4_small_flat_slice_is_legal(v4):
    # 2x2x1 (the v4-8 slice, 4 chips) is the only flat slice beyond a single chip.
    assert (2, 2, 1) in v4.legal_meshes(4)
    assert (2, 2, 2) in v4.legal_meshes(8)
    assert (1, 1, 4) not in v4.legal_meshes(4) and v4.legal_meshes(2) == []


def test_tpu_v5e_meshes_are_2d_and_at_most_16_long():
    network = network_for(get_hardware("tpu-v5e"))
    # v5e slices (Cloud TPU docs): 1x1, 2x2, 2x4, 4x4, 4x8, 8x8, 8x16, 16x16; none of 2 chips.
    assert network.legal_meshes(2) == []
    for chips in (1, 4, 8, 16, 32, 64, 128, 256):
        legal = network.legal_meshes(chips)
        assert legal, chips
        for mesh in legal:
            assert int(np.prod(mesh)) == chips
            assert 1 in mesh, mesh  # a 2D chip: one logical axis unused
            assert max(mesh) <= 16, mesh  # a v5e pod is 16x16
    assert (16, 16, 1) in network.legal_meshes(256)
    assert (4, 4, 4) not in network.legal_meshes(64)
    assert network.legal_meshes(512) == []


def test_gpu_meshes_need_whole_nodes(a100):
    # a100-80gb: 8 GPUs per NVLink domain. Up to 8 chips any count; beyond, whole nodes.
    for chips in (1, 4, 8, 16, 32):
        legal = a100.legal_meshes(chips)
        assert legal, chips
        assert all(int(np.prod(m)) == chips for m in legal)
    assert (1, 1, 8) in a100.legal_meshes(8)
    assert (2, 1, 8) in a100.legal_meshes(16)
    assert (2, 2, 1) in a100.legal_meshes(4)
    assert a100.legal_meshes(12) == []  # 1.5 nodes
    assert a100.legal_meshes(20) == []
    assert a100.legal_meshes(0) == []


def test_check_mesh(v4, a100):
    v4.check_mesh((4, 4, 4))
    a100.check_mesh((2, 1, 8))
    for network, mesh in ((v4, (1, 1, 64)), (v4, (2, 2, 3)), (a100, (1, 3, 4))):
        with pytest.raises(InvalidInputError) as info:
            network.check_mesh(mesh)
        assert info.value.field == "mesh"


def test_check_mesh_of_a_chip_count_the_hardware_cannot_form_names_the_chip_count(v4, a100):
    # Used to end "use one of none" (the empty list of meshes of 80 or 12 chips).
    for network, mesh, chips in ((v4, (4, 4, 5), 80), (a100, (1, 3, 4), 12), (v4, (10**21, 1, 1), 10**21)):
        with pytest.raises(InvalidInputError) as info:
            network.check_mesh(mesh)
        assert "none" not in str(info.value) and f"no mesh of {chips} chips" in str(info.value)
    with pytest.raises(InvalidInputError, match="use one of 2x2x16"):  # a count it forms: its meshes
        v4.check_mesh((1, 1, 64))


# --- switched (GPU) ----------------------------------------------------------------------------------


def test_switched_collective_inside_one_node(a100):
    # 1x1x8, axes xyz: all 8 GPUs in one NVLink domain. D (7/8) / 300e9 + 7 domain steps.
    # D = 3e9 -> 2.625e9 / 300e9 = 8.75e-3 s, + 7 x 2e-6 = 1.4e-5 s.
    expected = 3e9 * 7 / 8 / A100_DOMAIN_BW + 7 * A100_DOMAIN_LAT
    assert expected == pytest.approx(8.764e-3, rel=1e-12)
    assert time_of(a100, "all_gather", 3e9, (1, 1, 8), "xyz") == pytest.approx(expected, rel=REL)
    assert time_of(a100, "reduce_scatter", 3e9, (1, 1, 8), "xyz") == pytest.approx(expected, rel=REL)
    assert time_of(a100, "all_reduce", 3e9, (1, 1, 8), "xyz") == pytest.approx(2 * expected, rel=REL)
    # The same group written as 8x1x1 or 2x2x2 (8 consecutive chips): one node either way.
    assert time_of(a100, "all_gather", 3e9, (8, 1, 1), "xyz") == pytest.approx(expected, rel=REL)
    assert time_of(a100, "all_gather", 3e9, (2, 2, 2), "xyz") == pytest.approx(expected, rel=REL)


def test_switched_collective_across_two_nodes(a100):
    # 1x1x16, axes xyz: K = 16, 8 per node, 2 nodes. Hierarchical:
    # network stage D (2-1)/16 / 25e9, then domain stage D (7/8) / 300e9,
    # latencies 7 x 2e-6 (domain) + 1 x 5e-6 (network).
    # D = 4e9 -> 2.5e8 / 25e9 = 1e-2 s; 3.5e9 / 300e9 = 1.16666...e-2 s; + 1.9e-5 s.
    expected = 4e9 * (2 - 1) / 16 / A100_NET_BW + 4e9 * 7 / 8 / A100_DOMAIN_BW + 7 * A100_DOMAIN_LAT + 1 * A100_NET_LAT
    assert expected == pytest.approx(1e-2 + 3.5e9 / 300e9 + 1.9e-5, rel=1e-12)
    assert time_of(a100, "all_gather", 4e9, (1, 1, 16), "xyz") == pytest.approx(expected, rel=REL)
    assert time_of(a100, "all_reduce", 4e9, (1, 1, 16), "xyz") == pytest.approx(2 * expected, rel=REL)
    # More than the same D inside one node.
    assert expected > time_of(a100, "all_gather", 4e9, (1, 1, 8), "xyz")


def test_switched_strided_group_goes_over_the_network(a100):
    # Mesh 2x1x8: z (stride 1) fills a node, x has stride 8: its 2 chips sit in different nodes.
    # Axis x: K = 2, 1 chip per node, 2 nodes -> network only: D (2-1)/2 / 25e9 + 1 x 5e-6.
    # D = 1e9 -> 5e8 / 25e9 = 2e-2 s, + 5e-6 s.
    expected = 1e9 * 1 / 2 / A100_NET_BW + A100_NET_LAT
    assert expected == pytest.approx(2.0005e-2, rel=1e-12)
    assert time_of(a100, "all_gather", 1e9, (2, 1, 8), "x") == pytest.approx(expected, rel=REL)
    # Axis z of the same mesh stays inside a node: D (7/8) / 300e9 + 7 x 2e-6.
    assert time_of(a100, "all_gather", 1e9, (2, 1, 8), "z") == pytest.approx(
        1e9 * 7 / 8 / A100_DOMAIN_BW + 7 * A100_DOMAIN_LAT, rel=REL
    )


def test_switched_partial_node_groups(a100):
    # Mesh 4x4x1 (16 chips, y fastest): axis x has stride 4, so a node (8 chips) holds 2 of each
    # x group of 4 -> k = 2 inside, 2 nodes. D = 1e9:
    # 1e9 x 1/4 / 25e9 = 1e-2; 1e9 x 1/2 / 300e9 = 1.6666e-3; + 1 x 2e-6 + 1 x 5e-6.
    expected = 1e9 / 4 / A100_NET_BW + 1e9 / 2 / A100_DOMAIN_BW + A100_DOMAIN_LAT + A100_NET_LAT
    assert time_of(a100, "all_gather", 1e9, (4, 4, 1), "x") == pytest.approx(expected, rel=REL)


def test_a_tp_group_cut_by_a_node_edge_pays_the_network_for_its_smaller_piece():
    """TP 12 on 8-GPU H100 nodes (1x1x12): ranks 0-7 on node 0, 8-11 on node 1. In an all-gather
    each chip ends with all 12 shards of D/12; node 1's 4 chips must receive node 0's 8 shards
    (8D/12) through their own 4 NICs of 50 GB/s: at least 2D/12 / 50e9 s. D = 1.2e9 (PaLM 540B's
    prefill residual at batch 16, 2048 tokens, 18432 x 2 B): 4.0e-3 s. It was charged 3.35e-3 s
    in all (the group as 8 chips behind NVLink: D (1.5 - 1)/12 / 50e9 = 1.0e-3 s of network)."""
    h100 = network_for(get_hardware("h100-sxm"))
    d = 1.2e9
    network_floor = d * 8 / 12 / 4 / 50e9
    assert network_floor == pytest.approx(4.0e-3, rel=1e-12)
    got = time_of(h100, "all_gather", d, (1, 1, 12), "z")
    assert got >= network_floor
    # The hierarchical formula with the smaller piece (4 = gcd(12, 8)) as the chips per domain:
    # 3 pieces of 4, D (3 - 1)/12 / 50e9 + D (4 - 1)/4 / 450e9 + 3 x 2e-6 + 2 x 5e-6.
    assert got == pytest.approx(d * 2 / 12 / 50e9 + d * 3 / 4 / 450e9 + 3 * 2e-6 + 2 * 5e-6, rel=REL)
    # TP 6 of a 24-chip mesh 4x1x6: ranks 6-11 are 2 on node 0 and 4 on node 1: the 2 receive the
    # other 4 shards (4D/6) through 2 ports, 2D/6 / 50e9 each.
    assert time_of(h100, "all_gather", d, (4, 1, 6), "z") >= d * 2 / 6 / 50e9
    # Mesh 2x3x4 (24 chips): a y group of stride 4 is ranks 0, 4 (node 0) and 8 (node 1); node
    # 1's one chip receives 2 shards (2D/3) through its own port.
    assert time_of(h100, "all_gather", d, (2, 3, 4), "y") >= d * 2 / 3 / 50e9
    # A group that divides the node or fills whole nodes is as before: TP 6 alone (one node),
    # TP 4 of 16 chips, TP 16.
    assert time_of(h100, "all_gather", d, (1, 1, 6), "z") == pytest.approx(d * 5 / 6 / 450e9 + 5 * 2e-6, rel=REL)
    assert time_of(h100, "all_gather", d, (4, 1, 4), "z") == pytest.approx(d * 3 / 4 / 450e9 + 3 * 2e-6, rel=REL)
    assert time_of(h100, "all_gather", d, (1, 1, 16), "z") == pytest.approx(
        d / 16 / 50e9 + d * 7 / 8 / 450e9 + 7 * 2e-6 + 5e-6, rel=REL
    )


def test_switched_without_nvlink_everything_is_network():
    # l4: domain of 1 GPU, 32e9 B/s PCIe. Mesh 1x1x2: K = 2, 2 "nodes":
    # D (2-1)/2 / 32e9 + 5e-6. D = 6.4e8 -> 1e-2 + 5e-6.
    network = network_for(get_hardware("l4"))
    assert time_of(network, "all_gather", 6.4e8, (1, 1, 2), "xyz") == pytest.approx(1e-2 + 5e-6, rel=REL)
    assert network.legal_meshes(3)  # any count: every GPU is its own node


def test_switched_trivial_collectives_are_free(a100):
    assert time_of(a100, "all_gather", 1e9, (1, 1, 8), "x") == 0.0
    assert time_of(a100, "all_reduce", 1e9, (1, 1, 1), "xyz") == 0.0
    assert time_of(a100, "all_gather", 0.0, (1, 1, 16), "xyz") == 0.0


def test_switched_is_vectorized_per_configuration(a100):
    meshes = np.array([[1, 1, 8], [1, 1, 16], [2, 1, 8]], dtype=np.float64)
    d = np.array([3e9, 4e9, 1e9])
    got = a100.collective_time_s("all_gather", d, meshes, "xyz")
    # Row 3: 2x1x8 over xyz = 16 chips in 2 nodes, as 1x1x16.
    expected = [
        3e9 * 7 / 8 / 300e9 + 14e-6,
        4e9 / 16 / 25e9 + 4e9 * 7 / 8 / 300e9 + 14e-6 + 5e-6,
        1e9 / 16 / 25e9 + 1e9 * 7 / 8 / 300e9 + 14e-6 + 5e-6,
    ]
    np.testing.assert_allclose(got, expected, rtol=REL)


def _groups_from_ones(spec, mesh: np.ndarray, axes: str) -> dict[str, np.ndarray]:
    """The group terms as first written (products from ones, each term from its own
    difference): switched_groups reorders its passes and must keep these numbers bit for bit."""
    strides = {"x": lambda: mesh[:, 1] * mesh[:, 2], "y": lambda: mesh[:, 2], "z": lambda: 1.0}
    inside = np.ones(mesh.shape[0])
    k = np.ones(mesh.shape[0])
    whole = mesh[:, 0] * mesh[:, 1] * mesh[:, 2]
    for axis in axes:
        length = mesh[:, AXIS_INDEX[axis]]
        stride = strides[axis]()
        fits = np.minimum(length, np.maximum(1.0, np.floor(spec.domain_size / stride)))
        # A span of L x stride consecutive chips cut by a domain's edge: its smallest piece,
        # gcd(span, domain), holds gcd / stride of the group (where the stride divides the domain).
        span = length * stride
        cut = (whole > spec.domain_size) & (spec.domain_size % stride == 0)
        cut &= (spec.domain_size % span != 0) & (span % spec.domain_size != 0)
        fits = np.where(cut, np.gcd(span.astype(np.int64), spec.domain_size) / stride, fits)
        inside = inside * fits
        k = k * length
    domains = k / inside
    return {
        "inside": inside,
        "k": k,
        "domains_minus_one": domains - 1.0,
        "inside_minus_one": inside - 1.0,
        "k_minus_inside": k - inside,
        "domain_latency_s": (inside - 1.0) * spec.domain_latency_s,
        "network_latency_s": (domains - 1.0) * spec.network_latency_s,
        "several": k > 1,
    }


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_switched_groups_are_the_products_from_ones_bit_for_bit(dtype):
    # Lengths that fill a domain, split it unevenly (3, 6, 12 against 8) and cross it, over every
    # axis set; the geometry with and without the group sizes given.
    spec = get_hardware("h100-sxm").interconnect
    lengths = [1, 2, 3, 4, 6, 8, 12, 16]
    mesh = np.array([(x, y, z) for x in lengths for y in lengths for z in lengths], dtype=dtype)
    for axes in ("", "x", "y", "z", "xy", "xz", "yz", "xyz"):
        expected = _groups_from_ones(spec, mesh, axes)
        sizes = group_size(mesh, axes)
        assert sizes.dtype == np.float64
        assert np.array_equal(sizes.view(np.uint64), expected["k"].view(np.uint64)), axes
        for given in (None, sizes):
            got = switched_groups(spec, mesh, axes, given)
            for name, value in expected.items():
                array = getattr(got, name)
                assert array.dtype == value.dtype, (axes, name)
                assert np.array_equal(array.view(np.uint8), value.view(np.uint8)), (axes, name)


# --- parse_mesh --------------------------------------------------------------------------------------


def test_parse_mesh():
    assert parse_mesh("4x4x4") == (4, 4, 4)
    assert parse_mesh("8x2") == (8, 2, 1)
    assert parse_mesh("16") == (16, 1, 1)
    assert parse_mesh("2X4x8") == (2, 4, 8)


@pytest.mark.parametrize("text", ["4x", "axb", "0x4", "", "4x4x4x4", "-1x4", "4by4", "x", "2.5x2"])
def test_parse_mesh_rejects_bad_strings(text):
    with pytest.raises(InvalidInputError) as info:
        parse_mesh(text)
    assert info.value.field == "mesh"


@pytest.mark.parametrize("kind", ["all_gather", "reduce_scatter", "all_reduce", "all_to_all"])
@pytest.mark.parametrize("axes", ["x", "yz", "xyz"])
def test_torus_collective_zeroes_rows_that_move_nothing_as_np_where_bit_for_bit(v4, kind, axes):
    """TorusNetwork.collective_time_s returns its own temporary, zeroed by position where a row
    moves nothing (no bytes, or a group of one chip), and as it is where every row moves: bit for
    bit np.where(moves, time, 0.0) over the straightforward formula (the mesh-only terms of
    _torus_axes: factor x (latency + D fraction / bandwidth, 0 where no link))."""
    from cost_models.topology import _torus_axes

    rng = np.random.default_rng(5)
    meshes = np.array([m for chips in (1, 4, 8, 64, 256) for m in v4.legal_meshes(chips)], dtype=np.float64)
    mesh = meshes[rng.integers(0, len(meshes), 3000)]
    g = _torus_axes(v4.spec, v4.efficiency, mesh, axes, kind == "all_to_all")
    assert not np.all(g.several)  # some groups of one chip
    for data in (rng.uniform(1e3, 1e9, 3000), np.where(rng.random(3000) < 0.5, 0.0, rng.uniform(1e3, 1e9, 3000))):
        moved = np.divide(data * g.fraction, g.bandwidth, out=np.zeros(3000), where=g.bandwidth > 0)
        time = (2.0 if kind == "all_reduce" else 1.0) * (g.latency_s + moved)
        expected = np.where((data > 0) & g.several, time, 0.0)
        assert v4.collective_time_s(kind, data, mesh, axes).tobytes() == expected.tobytes()
    # Every row moving: the time itself.
    several = mesh[g.several]
    data = rng.uniform(1e3, 1e9, len(several))
    g = _torus_axes(v4.spec, v4.efficiency, several, axes, kind == "all_to_all")
    moved = np.divide(data * g.fraction, g.bandwidth, out=np.zeros(len(several)), where=g.bandwidth > 0)
    time = (2.0 if kind == "all_reduce" else 1.0) * (g.latency_s + moved)
    assert v4.collective_time_s(kind, data, several, axes).tobytes() == time.tobytes()
