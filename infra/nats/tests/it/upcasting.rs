// upcasting tests are written once the inventory aggregate lands
