"""A fine-tuning run killed with SIGKILL mid-epoch resumes from its last epoch checkpoint and ends with exactly the
weights of an uninterrupted run: nothing lost, the same batches in the same order (subprocesses, dropout 0 because
Keras does not checkpoint dropout seed generators)."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent('''
    import os, signal, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    import numpy as np
    from tfbertopt.data.demo import demo_examples, demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier
    from tfbertopt.train import finetune

    checkpoint_dir, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class KillMidEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            print(f"epoch {epoch + 1} begins", flush=True)

        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == kill_at and batch == 3:      # epoch `kill_at` saved, the next half done
                os.kill(os.getpid(), signal.SIGKILL)

    clf = tiny_bert_classifier(demo_vocabulary(), num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32,
                               sequence_length=16, dropout=0.0, seed=0)
    finetune(clf, demo_examples("train", 128), epochs=4, batch_size=16, learning_rate=1e-3, length_grouping=4,
             checkpoint_dir=checkpoint_dir, callbacks=[KillMidEpoch()], verbose=0, seed=7)
    np.savez(out, *[np.asarray(w) for w in clf.weights])
    print("finished", flush=True)
''')


def _run(tmp_path, name, kill_at):
    ckpt, out = tmp_path / f"{name}_ckpt", tmp_path / f"{name}.npz"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(ckpt), str(out), str(kill_at)],
                            capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, KERAS_BACKEND="tensorflow"))
    return result, ckpt, out


def test_sigkill_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    whole, _, whole_out = _run(tmp_path, "whole", kill_at=-1)
    assert whole.returncode == 0, whole.stderr[-4000:]

    killed, ckpt, out = _run(tmp_path, "killed", kill_at=2)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-4000:])
    assert "epoch 3 begins" in killed.stdout and not out.exists()
    assert (ckpt / "backup").exists()

    resumed = subprocess.run([sys.executable, "-c", SCRIPT, str(ckpt), str(out), "-1"], capture_output=True,
                             text=True, timeout=600, env=dict(os.environ, KERAS_BACKEND="tensorflow"))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "epoch 1 begins" not in resumed.stdout and "epoch 3 begins" in resumed.stdout   # resumed, not restarted
    a, b = np.load(whole_out), np.load(out)
    assert len(a.files) == len(b.files)
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
