std = "ngx_lua"
max_line_length = 80
files["t/lib"] = { max_line_length = 100 }
