"""Live computation started by several sessions at once on a fresh server: nobody gets an ImportError."""
import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys, threading
    from explorer.checkpoints.family import load_family
    from explorer.checkpoints.models import load_model

    assert "transformers" not in sys.modules  # a fresh server: nothing has imported it yet
    family = load_family(sys.argv[1])
    members = ["aligned", "useful", "harmful", "contaminated"] * 2
    start, failures = threading.Barrier(len(members)), []

    def session(member):
        start.wait()
        try:
            load_model(family, member)
        except Exception as exc:
            failures.append(f"{member}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=session, args=(m,)) for m in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(failures))
""")


def test_concurrent_first_loads_do_not_race_on_imports(llama_family):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(llama_family)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
