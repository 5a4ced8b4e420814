"""Bring the schema into the baked course and drop files the chosen options do not use."""
import os
import shutil
from pathlib import Path

# cookiecutter passes the template's folder as given on its command line, maybe relative to
# where it started (PWD), while hooks run inside the new project.
REPO_DIR = Path(os.environ.get("PWD", "."), {{ cookiecutter._repo_dir | tojson }})
FLEET_PROVIDER = {{ cookiecutter.fleet_provider | tojson }}

# Files only some answers need: path in the baked repo -> keep it?
OPTIONAL_FILES = {
    "clouds.yaml.example": FLEET_PROVIDER == "openstack",
    ".github/workflows/deploy.yml": FLEET_PROVIDER == "openstack",  # tag-driven fleets live in the cloud
    ".github/workflows/teardown.yml": FLEET_PROVIDER == "openstack",
    ".github/workflows/schedule.yml": FLEET_PROVIDER == "openstack",
}


def main() -> None:
    """Copy schema/course.schema.json (the one source of truth) and prune unused files."""
    shutil.copyfile(REPO_DIR / "schema" / "course.schema.json", Path("coursekit", "course.schema.json"))
    for name, keep in OPTIONAL_FILES.items():
        if not keep:
            Path(name).unlink()


if __name__ == "__main__":
    main()
