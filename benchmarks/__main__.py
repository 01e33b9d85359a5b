"""python -m benchmarks report [--results_dir=DIR]: renders results/*.md from the records."""
import argparse

from benchmarks import common, report


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
  p.add_argument("command", choices=["report"])
  p.add_argument("--results_dir", default=common.RESULTS)
  args = p.parse_args(argv)
  for path in report.render_all(args.results_dir):
    print(f"wrote {path}")


if __name__ == "__main__":
  main()
