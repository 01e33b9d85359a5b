"""python -m benchmarks report: renders results/*.md and README.md's headline block from records."""
import argparse

from benchmarks import common, report


def make_parser():
  p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
  p.add_argument("command", choices=["report"])
  p.add_argument("--results_dir", default=common.RESULTS, help="the record files and pages")
  p.add_argument("--readme", default=report.README, help="the README whose headline block to fill")
  return p


def main(argv=None):
  args = make_parser().parse_args(argv)
  for path in report.render_all(args.results_dir, args.readme):
    print(f"wrote {path}")


if __name__ == "__main__":
  main()
