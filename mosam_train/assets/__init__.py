"""SAM 2 weights shipped with the package; `mosam_train.models.shipped` lists and checks them."""
