"""Characters from one photo: photo -> face -> synthetic views -> identity filter -> dataset -> LoRA run.

A character is a ``characters`` row owned by one user (:mod:`masuka.characters.library`); its photos and face
crops live in ``characters/<id>/`` under the data dir, its views are ordinary generations, its kept views become
an ordinary dataset and its LoRA an ordinary training run.
"""
