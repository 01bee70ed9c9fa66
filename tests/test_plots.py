"""Figures in notebooks: what sparkmagic's ``%matplot plt`` renders through Livy, and the
``%matplot`` magic helpers register for IPython kernels (papermill, local Jupyter).

Livy's Python REPL (apache/incubator-livy, repl/src/main/resources/fake_shell.py, ``magic_matplot``)
handles a line ``%matplot plt`` with ``global_dict["plt"].gcf()`` then
``fig.savefig(buffer, format="png")``, and returns the bytes as ``image/png``. The test below
runs those lines on a namespace where the notebook's cell ran, as Livy does.
"""

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))

CELL_SET_UP = textwrap.dedent("""\
    import numpy as np
    import matplotlib.pyplot as plt
    from helpers.plots import make_current, variance_figure
    ratios = np.linspace(0.2, 0.001, 60)
    figure = variance_figure(ratios / ratios.sum(), 20, 0.95)
    """)


def livy_matplot(global_dict, name="plt"):
    """Livy's ``magic_matplot``: ``global_dict[name].gcf()`` saved as PNG bytes."""
    value = global_dict[name]
    fig = value.gcf()
    imgdata = io.BytesIO()
    fig.savefig(imgdata, format="png")
    return fig, imgdata.getvalue()


def test_make_current_gives_livy_matplot_the_whole_figure():
    global_dict = {}
    exec(CELL_SET_UP + "make_current(figure)\n", global_dict)  # the cell's code, in Livy's globals
    figure = global_dict["figure"]
    import matplotlib.pyplot as plt

    assert plt.gcf() is figure, "after make_current, pyplot's current figure is the figure"
    rendered, png = livy_matplot(global_dict)
    assert rendered is figure and plt.gcf() is figure
    image = Image.open(io.BytesIO(png))
    width, height = (figure.get_size_inches() * figure.dpi).round().astype(int)
    assert image.size == (width, height) == (1100, 600), "the figure's size, not pyplot's 640x480"
    pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "a drawn figure, not a blank one"
    # One figure at a time: the next make_current closes the previous one in pyplot.
    exec(
        "second = variance_figure(ratios / ratios.sum(), 10, None)\nmake_current(second)\n",
        global_dict,
    )
    assert plt.get_fignums() == [plt.gcf().number] and plt.gcf() is global_dict["second"]
    plt.close("all")


def run_in_ipython(cell: str) -> str:
    """Run ``cell`` in a real IPython shell (own process) and print what it displayed."""
    program = textwrap.dedent("""\
        import sys
        from IPython.core.interactiveshell import InteractiveShell
        from IPython.utils.capture import capture_output
        shell = InteractiveShell.instance()
        with capture_output() as captured:
            result = shell.run_cell(sys.stdin.read())
        for output in captured.outputs:
            print("display:", sorted(output.data))
        print("error:", type(result.error_in_exec).__name__ if result.error_in_exec else None)
        print("stderr:", captured.stderr.strip().splitlines()[-1:] if captured.stderr else [])
        import matplotlib.pyplot as plt
        print("figures left in pyplot:", len(plt.get_fignums()))
        """)
    environment = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND="agg")
    result = subprocess.run(
        [sys.executable, "-c", program],
        input=cell,
        text=True,
        capture_output=True,
        env=environment,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_matplot_magic_shows_the_figure_once_as_png_under_ipython():
    out = run_in_ipython(CELL_SET_UP + "make_current(figure)\n%matplot plt\n")
    displays = [line for line in out.splitlines() if line.startswith("display:")]
    assert displays == ["display: ['image/png', 'text/plain']"], out
    assert "error: None" in out and "figures left in pyplot: 0" in out


def test_matplot_magic_names_a_missing_variable():
    out = run_in_ipython("from helpers.plots import make_current\n%matplot pyplot_missing\n")
    assert "error: NameError" in out, out
