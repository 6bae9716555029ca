"""The soak test (tests/soak/run.py) at its CI size: hundreds of thousands of requests, WebSocket
sessions, SSE streams, uploads, raising handlers and vanishing clients against a server in a
subprocess; its RSS must come back within 8 MiB and its descriptors and threads exactly.
The long variant: python tests/soak/run.py --scale 10"""
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent / "soak" / "run.py"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_soak_returns_to_baseline():
    proc = subprocess.run([sys.executable, str(RUN), "--scale", "1"], capture_output=True,
                          text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '"wrk_requests"' in proc.stdout
