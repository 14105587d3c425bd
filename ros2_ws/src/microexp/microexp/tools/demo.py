"""`microexp demo`: placeholder until the pieces land (replaced below)."""
def add_arguments(parser):
    parser.add_argument("--out", default="out/demo")
def run(args):
    return 0
