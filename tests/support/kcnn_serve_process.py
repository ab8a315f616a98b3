"""``kcnn-serve`` as a subprocess on an ephemeral loopback port (shared by the explain tests)."""
import os
import queue
import signal
import subprocess
import sys
import threading


def serve_command():
    """The installed ``kcnn-serve`` script, or its module when the script is not installed."""
    script = os.path.join(os.path.dirname(sys.executable), "kcnn-serve")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "kcnn.cli.serve"]


class Server:
    """``kcnn-serve MODEL --port 0``; ``url`` is read from its first stdout line, and with
    ``--grpc-port`` among ``args``, ``grpc`` (``HOST:PORT``) from the second."""

    def __init__(self, model_path, *args, timeout=120):
        self.process = subprocess.Popen(
            [*serve_command(), str(model_path), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = queue.Queue()
        count = 2 if "--grpc-port" in args else 1
        threading.Thread(target=lambda: [lines.put(self.process.stdout.readline())
                                         for _ in range(count)], daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
            grpc_line = lines.get(timeout=timeout) if count == 2 else ""
        except queue.Empty:
            line = grpc_line = ""
        if not line.startswith("serving "):
            self.stop()
            raise RuntimeError(f"kcnn-serve did not start: {line!r} {self.process.stderr.read()}")
        self.url = line.split(" on ")[-1].strip()
        self.grpc = grpc_line.removeprefix("grpc on ").strip() or None

    def stop(self, timeout=15):
        """SIGTERM, then the exit code (killed after ``timeout`` seconds)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
