"""restricted_load: reads paddle.save state dicts, refuses any other global without running it."""
import os
import pickle
import sys

import numpy as np
import paddle
import pytest

from dist_train.safeload import UnsafeFileError, restricted_load
from helpers import REPO, run_in_own_group

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2


class SystemCall:
    """Unpickling this runs a shell command (the classic malicious pickle)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_reads_a_paddle_saved_state_dict(tmp_path):
    model = paddle.nn.Sequential(paddle.nn.Conv3D(3, 4, 3), paddle.nn.BatchNorm3D(4),
                                 paddle.nn.Linear(4, 2))
    state = model.state_dict()
    path = tmp_path / "w.pdparams"
    paddle.save({**state, "epoch": 3, "meta": {"names": ["a", "b"], "lr": 0.5}}, str(path))
    loaded = restricted_load(path)
    assert set(loaded) == set(state) | {"epoch", "meta"}  # Paddle's name table is dropped
    for key, tensor in state.items():
        assert isinstance(loaded[key], np.ndarray) and loaded[key].dtype == np.float32
        np.testing.assert_array_equal(loaded[key], tensor.numpy())
    assert loaded["epoch"] == 3 and loaded["meta"] == {"names": ["a", "b"], "lr": 0.5}
    reloaded = paddle.nn.Sequential(paddle.nn.Conv3D(3, 4, 3), paddle.nn.BatchNorm3D(4),
                                    paddle.nn.Linear(4, 2))
    reloaded.set_state_dict({k: loaded[k] for k in state})
    np.testing.assert_array_equal(reloaded[0].weight.numpy(), model[0].weight.numpy())


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pdparams"
    with open(path, "wb") as f:
        pickle.dump({"w": np.zeros(2, np.float32), "x": SystemCall(f"touch {marker}")}, f)
    with pytest.raises(UnsafeFileError) as err:
        restricted_load(path)
    assert str(path) in str(err.value) and "system" in str(err.value)
    assert not marker.exists()
    # Control: the same file does run its payload under plain pickle (as paddle.load would).
    code = f"import pickle; pickle.load(open({str(path)!r}, 'rb'))"
    assert run_in_own_group([sys.executable, "-c", code], 60, REPO, dict(os.environ)).returncode == 0
    assert marker.exists()


@pytest.mark.parametrize("payload", [eval, getattr, __import__])
def test_builtins_beyond_containers_are_refused(tmp_path, payload):
    class Reduce:
        def __reduce__(self):
            return payload, ("1",) if payload is not getattr else (1, "real")

    path = tmp_path / "b.pdparams"
    path.write_bytes(pickle.dumps({"a": Reduce()}, protocol=2))
    with pytest.raises(UnsafeFileError, match=f"builtins.{payload.__name__}"):
        restricted_load(path)


def test_object_arrays_torch_files_and_garbage_are_refused(tmp_path):
    obj_path = tmp_path / "o.pdparams"
    obj_path.write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))
    with pytest.raises(UnsafeFileError, match="object array"):
        restricted_load(obj_path)
    garbage = tmp_path / "g.pdparams"
    garbage.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(pickle.UnpicklingError, match=str(garbage)):
        restricted_load(garbage)


def test_plain_containers_and_numpy_scalars_load(tmp_path):
    from collections import OrderedDict
    value = OrderedDict(a=np.float32(1.5), b=(1, 2), c={3, 4}, d=np.arange(6).reshape(2, 3))
    path = tmp_path / "c.pdparams"
    path.write_bytes(pickle.dumps(value, protocol=2))
    loaded = restricted_load(path)
    assert loaded["a"] == np.float32(1.5) and loaded["b"] == (1, 2) and loaded["c"] == {3, 4}
    np.testing.assert_array_equal(loaded["d"], np.arange(6).reshape(2, 3))


def test_objects_from_other_ranks_are_unpickled_with_the_same_restriction():
    import pickle

    from dist_train.safeload import restricted_loads

    obj = ({3: (np.arange(4.0), 2, np.int64(1))}, "path", None, [True, 0.5])
    back = restricted_loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), "rank 1")
    np.testing.assert_array_equal(back[0][3][0], obj[0][3][0])
    assert back[1:] == obj[1:] and back[0][3][1:] == obj[0][3][1:]

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(UnsafeFileError, match="rank 1: refused to load global"):
        restricted_loads(pickle.dumps(Evil()), "rank 1")
