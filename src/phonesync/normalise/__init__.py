"""Pure validation and normalisation of sheet cells: NIK, phone number, update time."""
