"""The faust worker (`faust -A streamapp.app worker`): the only package that imports faust
or mode."""
