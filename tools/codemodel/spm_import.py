"""Imports Debian's python3-sentencepiece (tools/codemodel/setup.sh installs it).

It lives in the system interpreter's dist-packages; when this script runs under another
Python 3 (a virtual environment, a locally built one), it is run again under /usr/bin/python3
if that one has the module."""
import os
import subprocess
import sys

SYSTEM_PYTHON = "/usr/bin/python3"


def sentencepiece_or_none():
    try:
        import sentencepiece
        return sentencepiece
    except ImportError:
        pass
    if (os.path.exists(SYSTEM_PYTHON) and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)
            and not os.environ.get("LAZYLLM_SPM_REEXEC")
            and subprocess.run([SYSTEM_PYTHON, "-c", "import sentencepiece"], capture_output=True).returncode == 0):
        os.environ["LAZYLLM_SPM_REEXEC"] = "1"
        sys.stdout.flush()
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
    return None


def sentencepiece():
    spm = sentencepiece_or_none()
    if spm is None:
        sys.exit("error: the sentencepiece module is missing (bash tools/codemodel/setup.sh installs "
                 "Debian's python3-sentencepiece)")
    return spm
