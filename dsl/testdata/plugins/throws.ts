// A plugin whose module throws while loading (test fixture).
throw new Error("this plugin is broken on purpose");
