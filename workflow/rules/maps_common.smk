# Scenes, models and paths of the maps (workflow/rules/maps.smk), derived from the config's `maps`.
import re
import shlex

MAPS = config.get("maps", {})
MAP_SCENES = MAPS.get("scenes", {})
MAP_MODELS = MAPS.get("models", {})
MAP_DIR = f"{RESULTS}/maps/{{scene}}"
SCENE_DIR = f"{config['data']['raw_dir']}/scenes"


def scene_inputs(scene):
    """The synthetic scene's folder, or the user's files and folders."""
    entry = MAP_SCENES[scene]
    return [f"{SCENE_DIR}/{scene}"] if "synthetic" in entry else list(entry["files"])


def map_model(model):
    """The model file of a map: the task's best fine-tuned model, or the config's path."""
    entry = MAP_MODELS[model]
    return best_model_file(entry["best"]) if "best" in entry else entry["path"]


BEST_MODELS = sorted({best_model_file(m["best"]) for m in MAP_MODELS.values() if "best" in m})


def map_truth(wildcards):
    """The synthetic scene's true map of the model's task (for the error panel), if any."""
    task = MAP_MODELS[wildcards.model].get("best") or MAP_MODELS[wildcards.model].get("task")
    if "synthetic" not in MAP_SCENES[wildcards.scene] or task is None:
        return ""
    return f"--truth {shlex.quote(f'{SCENE_DIR}/{wildcards.scene}/truth/{task}.tif')}"


MAP_FIGURES = [f"{RESULTS}/maps/{scene}/{model}.png" for scene in MAP_SCENES
               for model in MAP_MODELS]
MAPS_OUT = [f"{RESULTS}/maps/{scene}/{model}.tif" for scene in MAP_SCENES for model in MAP_MODELS]


wildcard_constraints:
    scene="|".join(map(re.escape, MAP_SCENES)) or "^$",
    model="|".join(map(re.escape, MAP_MODELS)) or "^$",
